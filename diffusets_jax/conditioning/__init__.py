"""The condition vector: clinical reports to prompts to text embeddings (MiniLM, OpenAI or
hashing, cached), patient fields (sex, age, heart rate) and their fills, and the record of what a
trained model was conditioned with."""
