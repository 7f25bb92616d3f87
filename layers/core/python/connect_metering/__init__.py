"""Amazon Connect agent-minute metering for AWS Marketplace SaaS sellers.

Kinds of module kept apart: ``domain`` (pure rules: no boto3, no clock reads), ``services`` (use cases
over the domain and ports), ``adapters`` (the only code that calls AWS, clients injected) and
``local`` (replay, simulate, serve, bench, the Marketplace simulator: never shipped to Lambda).
"""

__version__ = "0.1.0"
