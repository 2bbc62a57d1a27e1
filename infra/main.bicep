// authwatch on Azure: `azd up` provisions this and deploys the app (azure.yaml, service "api").
//
//   resource group rg-<env>
//   ├─ user-assigned managed identity   the only principal the app runs as (modules/identity.bicep)
//   ├─ storage account                  host storage, deployment package, queues, tables; Entra-only (storage.bicep)
//   ├─ Log Analytics + App Insights     Entra-authenticated telemetry (monitoring.bicep)
//   ├─ Flex Consumption plan + app      Python 3.11, identity-based connections only (function-app.bicep)
//   ├─ role assignments                 exactly the data-plane roles the identity needs (rbac.bicep)
//   └─ Key Vault (optional)             only for tenants that use a client secret / certificate (keyvault.bicep)
//
// Signing in to customer tenants is secretless by default: the identity is a federated credential of the
// multi-tenant app registration (AUTHWATCH_APP_CLIENT_ID). Nothing here grants anything in Microsoft 365; the
// Graph / Exchange permissions are consented per customer tenant (`authwatch permissions`, `authwatch tenants add`,
// infra/README.md).

targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment: names the resource group and seeds the unique suffix of every resource.')
param environmentName string

@minLength(1)
@description('Region for every resource; it must offer Flex Consumption (`az functionapp list-flexconsumption-locations`).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Client id of the multi-tenant app registration authwatch signs in to customer tenants as (created by infra/scripts/app-registration.sh, or `azd env set AUTHWATCH_APP_CLIENT_ID <id>`).')
param appClientId string = ''

@description('NCRONTAB (six fields, seconds first) of the fan-out timer.')
param schedule string = '0 */15 * * * *'

@description('How often a tenant is due, in minutes, unless its registry entry sets scheduleMinutes.')
@minValue(5)
@maxValue(1440)
param intervalMinutes int = 15

@description('Days of event history kept per tenant.')
@minValue(1)
param historyDays int = 90

@description('Hours each sign-in and audit read goes back before the last complete one (Entra logs some entries late).')
@minValue(1)
@maxValue(24)
param signinOverlapHours int = 3

@description('Seconds one tenant\'s collection may take (Retry-After, throttling and token waits included); what does not fit is recorded as that source\'s DeadlineExceeded. At most 540: host.json\'s functionTimeout is 10 minutes and evaluate/persist need the rest.')
@minValue(5)
@maxValue(540)
param tenantDeadlineSeconds int = 420

@description('NCRONTAB of the reminder digest of still-open alerts (default 08:00 UTC daily).')
param digestSchedule string = '0 0 8 * * *'

@description('Lowest severity the reminder digest reminds of.')
@allowed([
  'low'
  'medium'
  'high'
])
param digestMinSeverity string = 'high'

@description('Alert channels: an object mapping channel names to {"type": "teams"|"slack"|"webhook"|"email", …}. Channels name the app settings that hold their secrets (webhook URLs, signing keys): put those in extraAppSettings as Key Vault references. Empty: alerts are only logged.')
param alertChannels object = {}

@description('Alert routing rules ({"routes": [...], "default": {...}}); empty: every channel gets every non-informational event.')
param alertRoutes object = {}

@description('Base URL of the dashboard that alerts link to (<base>/tenants/<id>), e.g. https://<app>.azurewebsites.net/api/dashboard?code=<function key>#. Empty: alerts carry no dashboard link.')
param dashboardUrl string = ''

@description('Entra token endpoint host (change only for a national cloud).')
param authorityHost string = 'https://login.microsoftonline.com'

@description('Microsoft Graph base URL including /v1.0 (change only for a national cloud).')
param graphUrl string = 'https://graph.microsoft.com/v1.0'

@description('Exchange Online admin API host (change only for a national cloud).')
param exchangeUrl string = 'https://outlook.office365.com'

@description('Most instances the app may scale out to (Flex Consumption: 40-1000). More tenants need more only when cycles get long.')
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

@description('Spread the app over availability zones (regions that offer it for Flex Consumption only; keeps at least two always-ready instances, which are billed).')
param zoneRedundant bool = false

@description('Storage replication (Standard_ZRS keeps the registry and history through a zone outage; Standard_LRS where the region has no zones).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSku string = 'Standard_ZRS'

@description('Deploy a Key Vault for per-tenant client secrets / certificates. Not needed with the recommended, secretless credential mode "federated".')
param deployKeyVault bool = false

@description('Optional: object id of the operator (user or group) who runs the authwatch CLI against this deployment\'s tables and queues. Empty: no human gets data access.')
param operatorPrincipalId string = ''

@description('Type of operatorPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param operatorPrincipalType string = 'User'

@description('Extra app settings, e.g. {"AUTHWATCH_SECRET_CONTOSO": "@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/contoso/)"} for a tenant in secret mode. Key Vault references only, never a secret value.')
param extraAppSettings object = {}

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'authwatch'
}
var functionAppName = 'func-authwatch-${resourceToken}'
var deploymentContainerName = 'deployment-package'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-authwatch-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    skuName: storageSku
    workspaceId: monitoring.outputs.workspaceId
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

module keyVault 'modules/keyvault.bicep' = if (deployKeyVault) {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv${resourceToken}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
    workspaceId: monitoring.outputs.workspaceId
  }
}

// Every setting authwatch reads (shared/settings.py, functions/*.py, the CLI), except those documented as local
// or test only in tests/unit/test_infra.py. The platform settings (AzureWebJobsStorage__*, Application Insights,
// AZURE_CLIENT_ID) are added in modules/function-app.bicep.
var appSettings = {
  // The fan-out timer's NCRONTAB (functions/timers.py: schedule="%AUTHWATCH_SCHEDULE%").
  AUTHWATCH_SCHEDULE: schedule
  AUTHWATCH_INTERVAL_MINUTES: string(intervalMinutes)
  AUTHWATCH_HISTORY_DAYS: string(historyDays)
  AUTHWATCH_SIGNIN_OVERLAP_HOURS: string(signinOverlapHours)
  AUTHWATCH_TENANT_DEADLINE_SECONDS: string(tenantDeadlineSeconds)
  AUTHWATCH_AUTHORITY_HOST: authorityHost
  AUTHWATCH_GRAPH_URL: graphUrl
  AUTHWATCH_EXCHANGE_URL: exchangeUrl
  // The multi-tenant app registration: the default client id of tenants added with `authwatch tenants add`.
  AUTHWATCH_APP_CLIENT_ID: appClientId
  // authwatch's tables and queues, identity-based (no connection string, no key): the service URLs of the
  // account, reached with the managed identity (AZURE_CLIENT_ID) through DefaultAzureCredential.
  AUTHWATCH_STORAGE_TABLE_URL: storage.outputs.tableEndpoint
  AUTHWATCH_STORAGE_QUEUE_URL: storage.outputs.queueEndpoint
  // Alerts (shared/alerts/config.py). Numbers are the code's defaults, written out so they show in the portal.
  AUTHWATCH_ALERT_CHANNELS: empty(alertChannels) ? '' : string(alertChannels)
  AUTHWATCH_ALERT_ROUTES: empty(alertRoutes) ? '' : string(alertRoutes)
  AUTHWATCH_ALERT_RETRIES: '3'
  AUTHWATCH_ALERT_BACKOFF_SECONDS: '0.5'
  AUTHWATCH_ALERT_TIMEOUT_SECONDS: '10'
  // The queue attempt that is the last: keep equal to host.json extensions.queues.maxDequeueCount.
  AUTHWATCH_ALERT_MAX_DEQUEUE: '5'
  // How long a receiver may stay down: until then a failed alert is parked on the queue and tried again.
  AUTHWATCH_ALERT_OUTAGE_HOURS: '24'
  AUTHWATCH_DASHBOARD_URL: dashboardUrl
  // The reminder digest timer (functions/alerts.py: schedule="%AUTHWATCH_DIGEST_SCHEDULE%").
  AUTHWATCH_DIGEST_SCHEDULE: digestSchedule
  AUTHWATCH_DIGEST_MIN_SEVERITY: digestMinSeverity
  // Where the dashboard page finds the JSON API: the host's default route prefix (host.json has no routePrefix).
  AUTHWATCH_DASHBOARD_API_BASE: '/api/'
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    appSettings: union(extraAppSettings, appSettings)
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    zoneRedundant: zoneRedundant
  }
  // The host starts as soon as the app exists: its identity must already hold the storage roles.
  dependsOn: [
    rbac
  ]
}

// azd stores these in .azure/<env>/.env; infra/scripts/app-registration.sh reads the identity and tenant ids.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = functionApp.outputs.uri
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AUTHWATCH_STORAGE_TABLE_URL string = storage.outputs.tableEndpoint
output AUTHWATCH_STORAGE_QUEUE_URL string = storage.outputs.queueEndpoint
output AZURE_KEY_VAULT_NAME string = deployKeyVault ? keyVault.outputs.name : ''
