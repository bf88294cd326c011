"""File formats read as they are: CSV and JSON Lines parsed strictly, line by line (a malformed
line is named or skipped with a receipt), ChatterBot corpus YAML, dotted paths into nested JSON
fields, GGUF model files (dequantized once into a plain folder). Each turns a file into what the
rest of the project reads: rows for data, a ``from_pretrained`` folder for a model."""
