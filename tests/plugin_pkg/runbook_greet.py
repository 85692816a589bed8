"""A third-party handler registered through the ``runbook.tasks`` entry point."""

from typing import ClassVar


class Greet:
    """Greet someone by name.

    The smallest possible plugin: it exists to prove that runbook finds handlers
    that other distributions register.
    """

    name = "greet"
    schema: ClassVar[dict] = {
        "type": "object",
        "properties": {
            "who": {"type": "string", "description": "Whom to greet."},
            "times": {"type": "integer", "minimum": 1, "default": 1},
        },
        "required": ["who"],
        "additionalProperties": False,
    }
    result: ClassVar[dict] = {"message": "the greeting"}
    example = "- greet: {who: world}\n"

    def run(self, args, ctx):
        return {"message": " ".join([f"hello {args['who']}"] * args.get("times", 1))}
