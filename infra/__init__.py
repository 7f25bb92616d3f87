"""AWS CDK app of the connect-metering back end: stacks compose one construct per capability."""
