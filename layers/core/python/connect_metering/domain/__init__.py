"""Pure billing and tenancy rules: no boto3, no clock reads, no I/O."""
