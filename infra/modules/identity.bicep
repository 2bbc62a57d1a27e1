// The one identity authwatch runs as: a user-assigned managed identity.
//
// It is used three ways, all secretless:
//   1. the Functions host and authwatch reach the storage account with it (AzureWebJobsStorage__credential);
//   2. it sends telemetry to Application Insights with Entra auth (APPLICATIONINSIGHTS_AUTHENTICATION_STRING);
//   3. its token for api://AzureADTokenExchange is the client assertion of the multi-tenant app registration
//      (a federated identity credential on that app: issuer login.microsoftonline.com/<this tenant>/v2.0,
//      subject = principalId below), which is how authwatch signs in to every customer tenant without a secret.
// User-assigned rather than system-assigned so the federated credential survives re-creating the function app.

@description('Name of the user-assigned managed identity.')
param name string

@description('Region of the identity.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
