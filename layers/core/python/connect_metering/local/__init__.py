"""Local runtime: replay, simulate, serve, bench and the Marketplace simulator.

Excluded from every Lambda asset (see infra/constructs/lambda_runtime.py).
"""
