"""AWS CDK v2 app for the serverless facial-emotion service (see docs/operators.md)."""
