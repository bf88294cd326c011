"""What a person reads: plots (PNG, inlined in the UI), markdown tables, the model card, and the
small metadata value types (markdown, path, JSON) that stages report with. Nothing here
computes a metric or touches a model; it presents figures made elsewhere."""
