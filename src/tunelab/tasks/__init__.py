"""What a fine-tuned model is measured on: classification metrics and the reports built from them."""
