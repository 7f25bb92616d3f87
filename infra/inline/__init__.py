"""Source files inlined into templates (no asset), kept here so they are linted, typed and tested."""
