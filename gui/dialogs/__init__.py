"""The windows the app opens beside the main one: the attention grid, About this model, and
the question for a Hugging Face Hub model's name."""
