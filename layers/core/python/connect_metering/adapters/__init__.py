"""The only code that calls AWS; every boto3 client is injected by the caller."""
