"""Hugging Face GPT-2 folders: read one into our parameters (importer), write a checkpoint as
one (exporter). Neither needs transformers."""
