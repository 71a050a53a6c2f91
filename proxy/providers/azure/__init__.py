"""`type: azure`: Azure OpenAI, an OpenAI dialect (builds on the openai folder's translator)."""

from proxy.providers.azure.config import AzureConfig
from proxy.providers.registry import Registration

PROVIDER = Registration("azure", AzureConfig, translator="proxy.providers.azure.translator:AzureTranslator")
