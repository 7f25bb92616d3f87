"""Use cases over the domain and the ports the adapters implement."""
