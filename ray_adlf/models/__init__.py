"""Model and tokenizer loading (local path, hub name, or the bundled ``tiny``)."""
