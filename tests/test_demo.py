"""`slimlab demo` writes its report, and running it again into the same folder works (its sections replace their
own earlier outputs: an ExCP chain only grows, a PAR run folder is not trained into twice)."""

from slimlab.cli import main


def test_demo_sections_run_again_into_the_same_folder(tmp_path):
    for _ in range(2):
        assert main(["demo", "--quick", "--out", str(tmp_path), "--only", "ExCP", "--only", "Attribute"]) == 0
        report = (tmp_path / "report.md").read_text()
        assert "section failed" not in report and "## ExCP" in report and "## Attribute-aware pooling" in report
