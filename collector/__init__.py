"""The collector: validate what gateways send, write it to InfluxDB, then acknowledge."""
