"""Persistence in Azure Table and Queue storage (Azurite locally): the only code that talks to the storage account.
May import: shared.model, shared.logs and the Azure storage SDKs only."""
