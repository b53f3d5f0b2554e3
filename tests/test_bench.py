"""The markdown writer shared by `aekit bench` and the benchmark scripts."""

from aekit.bench import update_section


def test_update_section_appends_then_replaces_only_its_block(tmp_path):
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\nintro\n")
    update_section(path, "speed", "Speed", "<!-- speed:start -->\nold\n<!-- speed:end -->")
    update_section(path, "other", "Other", "<!-- other:start -->\nkeep\n<!-- other:end -->")
    update_section(path, "speed", "Speed", "<!-- speed:start -->\nnew\n<!-- speed:end -->")
    text = path.read_text()
    assert text.startswith("# Benchmarks\n\nintro\n")
    assert "new" in text and "old" not in text and "keep" in text
    assert text.count("## Speed") == 1 and text.index("## Speed") < text.index("## Other")
