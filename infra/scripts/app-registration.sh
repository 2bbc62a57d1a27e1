#!/bin/sh
# azd hook (azure.yaml): the app registration authwatch signs in to Microsoft 365 tenants as, kept secretless.
#
#   preprovision   create the app registration (multi-tenant by default) with exactly the manifest's read-only
#                  permissions (infra/app-registration.json = `authwatch permissions --format app-registration`),
#                  or bring an existing one's permissions in line; store its client id in the azd environment
#                  (AUTHWATCH_APP_CLIENT_ID -> Bicep parameter appClientId -> app setting).
#   postprovision  add the federated credential that lets the managed identity sign in as the app (issuer: this
#                  tenant, subject: the identity's principal id, audience api://AzureADTokenExchange) and print the
#                  admin-consent link for this tenant.
#
# Idempotent. Needs the Azure CLI signed in to the operator tenant with a role that may create app registrations
# (Application Developer, or Cloud Application Administrator to change an existing one).
# Knobs (azd env set NAME VALUE): AUTHWATCH_APP_CLIENT_ID (use an existing app), AUTHWATCH_SIGN_IN_AUDIENCE
# (AzureADMultipleOrgs for an MSP, AzureADMyOrg to watch only your own tenant), AUTHWATCH_SKIP_APP_REGISTRATION=true
# (do it by hand: infra/README.md).
set -eu

stage="${1:-}"
here=$(cd "$(dirname "$0")" && pwd)
manifest="$here/../app-registration.json"

if [ "${AUTHWATCH_SKIP_APP_REGISTRATION:-false}" = "true" ]; then
  echo "app-registration.sh: skipped (AUTHWATCH_SKIP_APP_REGISTRATION=true)"
  exit 0
fi
if ! command -v az >/dev/null 2>&1; then
  echo "app-registration.sh: the Azure CLI (az) is needed; or create the app by hand (infra/README.md) and run" >&2
  echo "  azd env set AUTHWATCH_APP_CLIENT_ID <client id>; azd env set AUTHWATCH_SKIP_APP_REGISTRATION true" >&2
  exit 1
fi

case "$stage" in
preprovision)
  app_id="${AUTHWATCH_APP_CLIENT_ID:-}"
  if [ -z "$app_id" ]; then
    app_id=$(az ad app create --display-name "authwatch-${AZURE_ENV_NAME:-default}" \
      --sign-in-audience "${AUTHWATCH_SIGN_IN_AUDIENCE:-AzureADMultipleOrgs}" \
      --required-resource-accesses "@$manifest" \
      --web-redirect-uris "https://portal.azure.com/" \
      --query appId -o tsv)
    azd env set AUTHWATCH_APP_CLIENT_ID "$app_id"
    echo "app-registration.sh: created app registration $app_id"
  else
    az ad app update --id "$app_id" --required-resource-accesses "@$manifest"
    echo "app-registration.sh: app registration $app_id has the manifest's permissions"
  fi
  # Its service principal in this tenant: the admin-consent page and monitoring this tenant need it.
  if ! az ad sp show --id "$app_id" >/dev/null 2>&1; then
    az ad sp create --id "$app_id" >/dev/null
  fi
  ;;
postprovision)
  app_id="${AUTHWATCH_APP_CLIENT_ID:?AUTHWATCH_APP_CLIENT_ID is not set: run the preprovision hook first}"
  principal="${AZURE_MANAGED_IDENTITY_PRINCIPAL_ID:?not set: provision infra/main.bicep first}"
  tenant="${AZURE_TENANT_ID:?not set: provision infra/main.bicep first}"
  found=$(az ad app federated-credential list --id "$app_id" --query "length([?subject=='$principal'])" -o tsv)
  if [ "$found" = "0" ]; then
    az ad app federated-credential create --id "$app_id" --parameters \
      "{\"name\":\"authwatch-${AZURE_ENV_NAME:-default}\",\"issuer\":\"https://login.microsoftonline.com/$tenant/v2.0\",\"subject\":\"$principal\",\"audiences\":[\"api://AzureADTokenExchange\"]}" \
      >/dev/null
    echo "app-registration.sh: the managed identity $principal is now a federated credential of $app_id"
  else
    echo "app-registration.sh: federated credential for $principal already present"
  fi
  echo
  echo "Next, per tenant to watch (yours included): its admin consents at"
  echo "  https://login.microsoftonline.com/<tenant id>/adminconsent?client_id=$app_id"
  echo "and gives the app read-only Exchange roles (a role group; Global Reader is the fallback): the commands are"
  echo "printed by: authwatch tenants add --tenant <tenant id> --name <name> --check-only"
  ;;
*)
  echo "usage: app-registration.sh preprovision|postprovision" >&2
  exit 2
  ;;
esac
