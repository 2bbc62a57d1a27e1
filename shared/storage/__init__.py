"""Persistence in Azure Table storage (Azurite locally). The only code that talks to the storage account."""
