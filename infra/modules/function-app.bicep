// The Flex Consumption (FC1) function app on Python 3.11, running as the user-assigned managed identity.
//
// Flex Consumption takes its runtime from functionAppConfig.runtime and refuses the classic settings
// FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION and WEBSITE_RUN_FROM_PACKAGE: none of them is set here.
// The deployment package lives in a blob container read with the managed identity (no SAS, no key).

@description('Name of the function app (globally unique host name).')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Region of the plan and the app (must offer Flex Consumption).')
param location string

@description('Tags for the plan and the app; the app also gets azd-service-name=api so `azd deploy` finds it.')
param tags object = {}

@description('Resource id of the user-assigned managed identity.')
param identityId string

@description('Client id of the user-assigned managed identity.')
param identityClientId string

@description('Name of the storage account (AzureWebJobsStorage, identity-based).')
param storageAccountName string

@description('URL of the blob container holding the deployment package.')
param deploymentContainerUrl string

@description('Application Insights connection string (not a secret: local auth is disabled on the component).')
param applicationInsightsConnectionString string

@description('authwatch\'s own app settings (see main.bicep).')
param appSettings object

@description('Most instances the app may scale out to (Flex Consumption allows 40-1000).')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory per instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Spread instances over availability zones (only in regions that offer it for Flex Consumption; keeps at least two always-ready instances, which are billed).')
param zoneRedundant bool = false

// Settings the platform and the SDKs need; authwatch's own come from main.bicep (appSettings).
var platformSettings = {
  // The Functions host storage (locks, timer schedule, function keys, queue triggers), identity-based.
  AzureWebJobsStorage__accountName: storageAccountName
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  // Telemetry: the connection string says where, the authentication string says "with an Entra token of this
  // identity" (read by the Functions host and by azure-monitor-opentelemetry's exporter).
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // azure-identity's ManagedIdentityCredential / DefaultAzureCredential pick the user-assigned identity by this.
  AZURE_CLIENT_ID: identityClientId
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Zone redundancy is the zoneRedundant parameter (off by default): on Flex Consumption it is offered in some regions only and keeps at least two always-ready instances billed around the clock; turn it on where both are acceptable.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
    zoneRedundant: zoneRedundant
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Public network access is needed for the HTTP API and the dashboard, which authenticate with function keys over HTTPS only; restricting it needs access restrictions or a VNet chosen per deployment (infra/README.md, "Hardening").
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per trigger; always-ready instances would bill around the clock for a monitor that works a few seconds per tenant every few minutes. A missed timer tick is caught up by the next one (tenants are due by time, not by tick).
  // checkov:skip=CKV_AZURE_213: The platform health check is not supported on Flex Consumption; authwatch's own health is its per-tenant LastSuccessAt / ConsecutiveFailures in the registry and the tenant.unreachable events.
  // checkov:skip=CKV_AZURE_17: Client certificates would lock out the dashboard in a browser; callers authenticate with function keys over TLS 1.2.
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    // Key Vault references (optional per-tenant secrets) are resolved with the user-assigned identity.
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  // checkov reads this app-settings resource as if it were the site's web configuration; the site's own choices are
  // on `app` above. For the record:
  // checkov:skip=CKV_AZURE_13: Function-level keys authenticate the HTTP API (see `app`); App Service Authentication is optional hardening (infra/README.md).
  // checkov:skip=CKV_AZURE_63: App Service file-system HTTP logs do not exist on Flex Consumption; every request, failure and trace goes to Application Insights (APPLICATIONINSIGHTS_CONNECTION_STRING).
  // checkov:skip=CKV_AZURE_65: Detailed error pages are an App Service (IIS) feature absent from Flex Consumption; exceptions are in Application Insights.
  // checkov:skip=CKV_AZURE_66: Failed request tracing is an App Service (IIS) feature absent from Flex Consumption; failed requests are in Application Insights.
  // checkov:skip=CKV_AZURE_80: Not a .NET app: the runtime is Python 3.11 (functionAppConfig.runtime).
  // checkov:skip=CKV_AZURE_88: Flex Consumption apps have no Azure Files content share; the package is in a blob container.
  // checkov:skip=CKV_AZURE_222: See `app`: public access is needed for the HTTP API and dashboard (function keys, HTTPS only).
  parent: app
  name: 'appsettings'
  properties: union(appSettings, platformSettings)
}

// No basic-auth publishing (FTP, SCM/Kudu with a user name and password): `azd deploy` publishes with Entra.
resource ftp 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scm 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: app
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = app.name
output id string = app.id
output uri string = 'https://${app.properties.defaultHostName}'
