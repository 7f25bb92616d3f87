"""One stack per deployable unit: the seller's metering back end and the customer's forwarder."""
