// OPTIONAL (deployKeyVault=true): a vault for per-tenant client secrets or certificates, for tenants registered
// with credential mode "secret" or "certificate". The recommended mode, "federated", needs no secret at all and
// no vault: the managed identity is a federated credential of the multi-tenant app.
//
// A tenant in secret mode names an app setting (credential.secretSetting, e.g. AUTHWATCH_SECRET_CONTOSO) whose
// value is a Key Vault reference, `@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>/)`;
// the platform resolves it with the app's user-assigned identity (keyVaultReferenceIdentity on the site), which
// holds Key Vault Secrets User on this vault and nothing else. Secrets are put in by a person (`az keyvault secret
// set`), never by this template.

@description('Name of the vault (3-24 characters, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Region of the vault.')
param location string

@description('Tags for the vault.')
param tags object = {}

@description('Principal (object) id of the managed identity that reads the secrets.')
param principalId string

@description('Log Analytics workspace for the vault\'s audit log (who read which secret).')
param workspaceId string

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  // checkov:skip=CKV_AZURE_109: Key Vault references of a Flex Consumption app without VNet integration are resolved from App Service's shared infrastructure, which is not a "trusted service" that a firewall bypass admits; access is RBAC-only (no access policies) and audited. Private access needs a VNet: see infra/README.md, "Hardening".
  // checkov:skip=CKV_AZURE_189: Same reason as CKV_AZURE_109 (public network access is needed without a VNet).
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource vaultDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'audit-to-log-analytics'
  scope: vault
  properties: {
    workspaceId: workspaceId
    logs: [
      {
        categoryGroup: 'audit'
        enabled: true
      }
    ]
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
