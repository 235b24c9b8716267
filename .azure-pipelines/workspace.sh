# Sourced by every step that talks to the Azure ML workspace. Such a step is an AzureCLI@2 task,
# so az is already logged in through the service connection; this points it, and nbmill's MLflow
# client, at the workspace named in the variable group `nbmill-azure`.
: "${AZURE_SUBSCRIPTION_ID:?is not set: add it to the variable group nbmill-azure}"
: "${AZURE_RESOURCE_GROUP:?is not set: add it to the variable group nbmill-azure}"
: "${AZUREML_WORKSPACE_NAME:?is not set: add it to the variable group nbmill-azure}"

az extension add --name ml --upgrade --yes --only-show-errors
az account set --subscription "$AZURE_SUBSCRIPTION_ID"
# Defaults for every later `az ml` call of this step (AzureCLI@2 gives each step its own config).
az configure --defaults group="$AZURE_RESOURCE_GROUP" workspace="$AZUREML_WORKSPACE_NAME"

# The model registry is the workspace's: a model trained in one stage is deployed in another,
# on another agent, and the monitoring pipeline reads its baseline.
MLFLOW_TRACKING_URI="$(az ml workspace show --query mlflow_tracking_uri --output tsv)"
export MLFLOW_TRACKING_URI
echo "Azure ML workspace $AZUREML_WORKSPACE_NAME (resource group $AZURE_RESOURCE_GROUP)"

# The team's archive (README, "The archive"): when the variable group sets ARCHIVE_URL (for
# example az://nbmill-archive/records) and AZURE_STORAGE_ACCOUNT_URL, every record sealed and every
# event emitted in this step goes there, with the service connection's identity (az login, which
# DefaultAzureCredential uses). Steps outside AzureCLI@2 have no identity, and no archive.
if [ -n "${ARCHIVE_URL:-}" ]; then
  : "${AZURE_STORAGE_ACCOUNT_URL:?is not set: add it to the variable group nbmill-azure, beside ARCHIVE_URL}"
  export NBMILL_ARCHIVE="$ARCHIVE_URL"
  echo "Archive $NBMILL_ARCHIVE"
fi
