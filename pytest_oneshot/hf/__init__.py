"""Tasks as Hugging Face datasets: export (rows + ``tasks/<slug>/``), push and pull, ``--oneshot-hf``."""
