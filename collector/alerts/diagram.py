"""Print docs/alerts.md's lifecycle section: ``python -m collector.alerts.diagram``.

The diagram and table are drawn from lifecycle.TRANSITIONS by
``lifecycle.markdown()``; tests/unit/alerts/test_lifecycle.py fails when the
document and the table disagree.
"""

from collector.alerts.lifecycle import markdown

if __name__ == "__main__":
    print(markdown(), end="")
