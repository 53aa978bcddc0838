"""`python -m sandbox` runs the sandbox CLI command."""

from .cli import sandbox

if __name__ == "__main__":
    sandbox()
