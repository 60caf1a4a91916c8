"""Story files (YAML front matter + Markdown) -> Story, and sanitised HTML -> plain text."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from digest.errors import StoryError
from digest.sources.plaintext import LinkRefs, first_paragraph, html_to_text, word_count
from digest.sources.stories import load_folder, parse_story

SAMPLE_STORIES = ROOT / "stories"

FRONT = {
    "headline": '"Council votes to keep the library open on Sundays"',
    "published": "2026-12-01T05:30:00-06:00",
    "tags": "[local-government]",
    "cities": "[des-moines]",
    "priority": "2",
    "byline": '"By Sam Reyes"',
    "url": "https://news.example.org/2026/12/01/library-sundays",
}
BODY = """\
The City Council voted 5-2 on Monday to keep the central library open on Sundays.

**Why it matters:** Sunday is the busiest day for families and students.

- The branch will open at noon.
- Staffing costs $180,000 a year.

Read the [full vote tally](https://news.example.org/votes/412).
"""


def story_text(body: str = BODY, drop: tuple[str, ...] = (), extra: str = "", **front: str) -> str:
    values = {**FRONT, **front}
    lines = [f"{key}: {value}" for key, value in values.items() if key not in drop]
    return "---\n" + "\n".join(lines) + ("\n" + extra.rstrip("\n") if extra else "") + "\n---\n" + body


def parse(text: str, name: str = "stories/test-story.md"):
    return parse_story(text, source=name, default_id=Path(name).stem)


def parse_error(text: str) -> StoryError:
    with pytest.raises(StoryError) as info:
        parse(text)
    return info.value


# --- the sample newsroom --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sample():
    return load_folder(SAMPLE_STORIES)


def test_all_24_sample_stories_parse_without_problems(sample):
    assert sample.problems == ()
    assert len(sample.stories) == 24
    assert len({s.id for s in sample.stories}) == 24


def test_sample_stories_are_complete_smart_brevity_items(sample):
    for story in sample.stories:
        assert story.headline.strip()
        assert story.published.utcoffset() is not None
        assert story.words > 50, story.id
        assert story.image is not None and story.image.alt and story.image.credit and story.image.caption, story.id
        assert "<strong>" in story.body_html, story.id
        assert story.editions or story.tags or story.cities, story.id
    assert sum(1 for s in sample.stories if s.editor_note) >= 1


def test_sample_story_fields(sample):
    story = next(s for s in sample.stories if s.id == "2026-11-30-denver-snow-plow-routes")
    assert story.headline == "Denver will plow residential streets for the first time this winter"
    assert story.published == dt.datetime(2026, 11, 30, 22, 10, tzinfo=dt.timezone.utc)
    assert story.published.utcoffset() == dt.timedelta(hours=-7)
    assert story.cities == frozenset({"denver"})
    assert story.tags == frozenset({"transportation"})
    assert story.priority == 2
    assert story.byline == "By Jordan Espinoza-Hale"
    assert story.section == "City Hall"
    assert story.image.src == "https://images.northline.example.org/2026/11/30/side-street-plow.jpg"
    assert story.image.credit == "Photo: Mateo Qui\u00f1ones/Northline News"
    assert "<strong>Why it matters:</strong>" in story.body_html
    assert "<li>Crews will move onto residential streets" in story.body_html
    assert '<a href="https://northline.example.org/denver/plow-map" rel="noopener noreferrer">new plow map</a>' in story.body_html


# --- front matter ---------------------------------------------------------------------------------


def test_a_good_story_parses():
    story = parse(story_text())
    assert story.id == "test-story"
    assert story.headline == "Council votes to keep the library open on Sundays"
    assert story.published == dt.datetime(2026, 12, 1, 11, 30, tzinfo=dt.timezone.utc)
    assert story.tags == frozenset({"local-government"})
    assert story.cities == frozenset({"des-moines"})
    assert story.priority == 2
    assert story.url == "https://news.example.org/2026/12/01/library-sundays"
    assert story.image is None
    assert story.source == "stories/test-story.md"


def test_default_priority_and_explicit_id():
    story = parse(story_text(drop=("priority",), extra="id: library-sundays"))
    assert story.priority == 5
    assert story.id == "library-sundays"


def test_labels_are_case_insensitive_and_a_single_label_may_be_a_string():
    story = parse(story_text(tags="Local-Government", cities="[Des-Moines, ' TWIN-CITIES ']", extra="editions: [AM]"))
    assert story.tags == frozenset({"local-government"})
    assert story.cities == frozenset({"des-moines", "twin-cities"})
    assert story.editions == frozenset({"am"})


@pytest.mark.parametrize("published", ["2026-12-01T05:30:00", "2026-12-01 05:30", "2026-12-01"])
def test_published_without_offset_is_an_error_never_a_guess(published):
    err = parse_error(story_text(published=published))
    assert err.field == "published"
    assert "offset" in err.message
    assert err.file == "stories/test-story.md"
    assert err.exit_code == 2


@pytest.mark.parametrize("published,utc_hour", [
    ("2026-12-01T05:30:00Z", 5),
    ("'2026-12-01T05:30:00+00:00'", 5),
    ("2026-12-01 05:30:00-06:00", 11),
    ("2026-12-01T07:30:00+02:00", 5),
])
def test_published_with_offset_or_z_is_accepted(published, utc_hour):
    value = parse(story_text(published=published)).published
    assert value == dt.datetime(2026, 12, 1, utc_hour, 30, tzinfo=dt.timezone.utc)
    assert value.utcoffset() is not None


def test_published_that_is_not_a_date():
    err = parse_error(story_text(published='"Monday morning"'))
    assert err.field == "published"


@pytest.mark.parametrize("field", ["headline", "published"])
def test_required_fields(field):
    assert parse_error(story_text(drop=(field,))).field == field


@pytest.mark.parametrize("block", ["|", "|-", "|+"])
@pytest.mark.parametrize("last", [True, False], ids=["last-key", "middle-key"])
def test_multi_line_headline_is_refused(block, last):
    headline = f"headline: {block}\n  Council votes\n  to keep the library open"
    if last:
        text = story_text(drop=("headline",), extra=headline)
    else:
        text = story_text(drop=("headline",)).replace("---\n", f"---\n{headline}\n", 1)
    err = parse_error(text)
    assert err.field == "headline"


@pytest.mark.parametrize("key", ["byline", "editor_note", "section"])
def test_one_line_fields_refuse_line_breaks(key):
    err = parse_error(story_text(extra=f'{key}: "first line\\nBcc: someone@evil.example"', drop=(key,)))
    assert err.field == key


def test_unknown_key_is_refused_with_its_name():
    err = parse_error(story_text(extra="edtions: [am]"))
    assert err.field == "edtions"
    assert "unknown key" in err.message


@pytest.mark.parametrize("priority", ["0", "10", "high", "true", "2.5", "-1"])
def test_bad_priority(priority):
    assert parse_error(story_text(priority=priority)).field == "priority"


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://news.example.org/x", "news.example.org/x",
                                 '"https://news.example.org/a b"', "data:text/html,hi"])
def test_url_must_be_absolute_http(url):
    assert parse_error(story_text(url=url)).field == "url"


def test_headline_must_be_text():
    assert parse_error(story_text(headline="[1, 2]")).field == "headline"


def test_tags_must_be_names():
    assert parse_error(story_text(tags="[1, '']")).field == "tags"


def test_front_matter_must_exist_and_be_a_mapping():
    assert parse_error("Just a body, no front matter.\n").file == "stories/test-story.md"
    assert parse_error("---\n- a\n- b\n---\nbody\n").file == "stories/test-story.md"


def test_invalid_yaml_reports_a_line():
    err = parse_error(story_text(extra="tags: [unclosed"))
    assert err.line is not None and err.line >= 2


def test_bad_id():
    assert parse_error(story_text(extra="id: 'has spaces and /slashes'")).field == "id"


IMAGE = """\
image:
  src: https://images.example.org/library.jpg
  alt: "Readers at long tables under the library's skylight"
  credit: "Photo: Ana Ruiz/Test News"
  caption: "The central library on a Sunday afternoon."
  width: 1200
  height: 800"""


def test_image_keys():
    image = parse(story_text(extra=IMAGE)).image
    assert image is not None
    assert image.src == "https://images.example.org/library.jpg"
    assert image.alt == "Readers at long tables under the library's skylight"
    assert image.credit == "Photo: Ana Ruiz/Test News"
    assert image.caption == "The central library on a Sunday afternoon."
    assert (image.width, image.height) == (1200, 800)


def test_image_alt_credit_caption_are_optional():
    image = parse(story_text(extra="image:\n  src: https://images.example.org/a.jpg")).image
    assert image is not None and image.alt is None and image.credit is None and image.caption is None


@pytest.mark.parametrize("change,field", [
    (("src: https://images.example.org/library.jpg", "src: javascript:alert(1)"), "image.src"),
    (("src: https://images.example.org/library.jpg", "source: https://images.example.org/library.jpg"), "image.source"),
    (("credit: \"Photo: Ana Ruiz/Test News\"", "credt: \"Photo: Ana Ruiz/Test News\""), "image.credt"),
    (("width: 1200", "width: -5"), "image.width"),
    (("height: 800", "height: big"), "image.height"),
    (("alt: \"Readers at long tables under the library's skylight\"", "alt: \"two\\nlines\""), "image.alt"),
])
def test_bad_image_values(change, field):
    err = parse_error(story_text(extra=IMAGE.replace(*change)))
    assert err.field == field


def test_image_src_is_required_and_image_must_be_a_mapping():
    assert parse_error(story_text(extra="image:\n  alt: a photo")).field == "image.src"
    assert parse_error(story_text(extra="image: https://images.example.org/a.jpg")).field == "image"


# --- a folder of stories --------------------------------------------------------------------------


def test_duplicate_ids_across_files(tmp_path):
    (tmp_path / "a.md").write_text(story_text(extra="id: same-story"), encoding="utf-8")
    (tmp_path / "b.md").write_text(story_text(extra="id: same-story", headline='"Another"'), encoding="utf-8")
    load = load_folder(tmp_path)
    assert [s.source for s in load.stories] == [str(tmp_path / "a.md")]
    (problem,) = load.problems
    assert problem.field == "id"
    assert problem.file == str(tmp_path / "b.md")
    assert str(tmp_path / "a.md") in problem.message


def test_non_utf8_file_is_a_problem_not_a_crash(tmp_path):
    (tmp_path / "latin1.md").write_bytes(story_text(headline='"Caf\u00e9 closes"').encode("latin-1"))
    (tmp_path / "good.md").write_text(story_text(), encoding="utf-8")
    load = load_folder(tmp_path)
    assert [s.id for s in load.stories] == ["good"]
    (problem,) = load.problems
    assert problem.file == str(tmp_path / "latin1.md")
    assert "UTF-8" in problem.message


def test_a_bad_story_does_not_stop_the_others(tmp_path):
    shutil.copytree(SAMPLE_STORIES, tmp_path, dirs_exist_ok=True)
    (tmp_path / "2026-12-01-aaa-no-offset.md").write_text(story_text(published="2026-12-01T05:30:00"), encoding="utf-8")
    (tmp_path / "2026-12-01-zzz-typo.md").write_text(story_text(extra="edtions: [am]"), encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not a story", encoding="utf-8")
    load = load_folder(tmp_path)
    assert len(load.stories) == 24
    assert sorted((Path(p.file).name, p.field) for p in load.problems) == [
        ("2026-12-01-aaa-no-offset.md", "published"),
        ("2026-12-01-zzz-typo.md", "edtions"),
    ]


def test_missing_folder_is_reported(tmp_path):
    load = load_folder(tmp_path / "no-such-folder")
    assert load.stories == ()
    assert len(load.problems) == 1 and load.problems[0].file == str(tmp_path / "no-such-folder")


def test_bom_and_crlf_story_file(tmp_path):
    (tmp_path / "crlf.md").write_bytes(("\ufeff" + story_text()).replace("\n", "\r\n").encode("utf-8"))
    load = load_folder(tmp_path)
    assert load.problems == ()
    assert load.stories[0].headline == "Council votes to keep the library open on Sundays"


# --- the Markdown body ----------------------------------------------------------------------------


def test_body_keeps_lead_ins_bullets_and_safe_links():
    html = parse(story_text()).body_html
    assert "<strong>Why it matters:</strong> Sunday is the busiest day" in html
    assert re.search(r"<ul>\s*<li>The branch will open at noon.</li>\s*<li>Staffing costs \$180,000 a year.</li>\s*</ul>", html)
    assert '<a href="https://news.example.org/votes/412" rel="noopener noreferrer">full vote tally</a>' in html


def test_body_raw_html_goes_through_the_sanitiser():
    body = ('Text <script>alert(1)</script><img src=x onerror=alert(2)>'
            '<a href="javascript:alert(3)" onclick="x()">click</a> <iframe src="https://evil.example"></iframe>'
            '<style>p{}</style><link rel="stylesheet" href="https://evil.example/x.css">\n')
    html = parse(story_text(body=body)).body_html.lower()
    for bad in ("<script", "alert(1)", "<img", "onerror", "javascript:", "onclick", "<iframe", "<style", "<link"):
        assert bad not in html
    assert "click" in html


def test_template_syntax_in_a_story_is_kept_as_text():
    story = parse(story_text(body="Seven sevens are {{ 7*7 }} and {% raw %}.\n"))
    assert "{{ 7*7 }}" in story.body_html


def test_word_count_counts_read_words():
    story = parse(story_text(body="One two three.\n\n- four five\n- six\n\n**Seven:** eight [nine](https://e.example.org).\n"))
    assert story.words == 9
    assert word_count("<p>a b</p><p>c</p>") == 3


# --- plain text -----------------------------------------------------------------------------------


def test_links_are_numbered_across_calls_with_one_linkrefs():
    refs = LinkRefs()
    one = html_to_text('<p>See <a href="https://a.example/1">the map</a> and <a href="https://a.example/2">the data</a>.</p>', refs)
    two = html_to_text('<p>Also <a href="https://a.example/3">the vote</a>; again <a href="https://a.example/1">the map</a>.</p>', refs)
    assert one == "See the map [1] and the data [2]."
    assert two == "Also the vote [3]; again the map [1]."
    assert refs.items() == [(1, "https://a.example/1"), (2, "https://a.example/2"), (3, "https://a.example/3")]


def test_without_linkrefs_links_are_plain_text():
    assert html_to_text('<p>See <a href="https://a.example/1">the map</a>.</p>') == "See the map."


def test_bold_lead_ins_keep_their_words():
    text = html_to_text("<p><strong>Why it matters:</strong> Sunday is busy.</p><p><strong>What's next:</strong> A vote.</p>")
    assert text == "Why it matters: Sunday is busy.\n\nWhat's next: A vote."


def test_paragraphs_wrap_at_72_columns():
    words = " ".join(f"word{i}" for i in range(60))
    text = html_to_text(f"<p>{words}</p>")
    lines = text.split("\n")
    assert len(lines) > 3
    assert all(len(line) <= 72 for line in lines)
    assert " ".join(lines) == words


def test_bullets_hang_indent_and_sit_on_consecutive_lines():
    long_item = " ".join(["alpha"] * 30)
    text = html_to_text(f"<p>Lede.</p><ul><li>{long_item}</li><li>short item</li></ul><p>After.</p>")
    lines = text.split("\n")
    assert lines[0] == "Lede."
    assert lines[1] == ""
    assert lines[2].startswith("- alpha")
    continuation = [line for line in lines[3:] if line.startswith("  alpha")]
    assert continuation, text
    assert all(len(line) <= 72 for line in lines)
    item_end = lines.index("- short item")
    assert all(line.startswith("  ") for line in lines[3:item_end])  # hanging, no blank line between items
    assert lines[item_end + 1] == "" and lines[item_end + 2] == "After."


def test_numbered_and_nested_lists():
    text = html_to_text("<ol><li>first</li><li>second<ul><li>inner</li></ul></li></ol>")
    assert text.split("\n") == ["1. first", "2. second", "  - inner"]


def test_loose_list_items_keep_their_bullets():
    # Markdown with blank lines between bullets ("loose" list) wraps each item's text in <p>.
    html = parse(story_text(body="- first point\n\n- second point\n")).body_html
    assert "<li>" in html and "<p>" in html
    text = html_to_text(html)
    assert "- first point" in text.split("\n")
    assert "- second point" in text.split("\n")


def test_blockquote_prefix_on_every_wrapped_line():
    quote = " ".join(["quoted"] * 30)
    text = html_to_text(f"<p>Before.</p><blockquote><p>{quote}</p></blockquote><p>After.</p>")
    lines = text.split("\n")
    quoted = [line for line in lines if line.startswith("> ")]
    assert len(quoted) >= 2
    assert all(len(line) <= 72 for line in lines)
    assert lines[-1] == "After." and not lines[-1].startswith(">")
    assert " ".join(line[2:] for line in quoted) == quote


def test_entities_are_decoded_and_no_tags_survive():
    text = html_to_text("<p>Fish &amp; chips &lt;b&gt; &#8212; <em>fine</em></p>")
    assert text == "Fish & chips <b> \u2014 fine"


def test_first_paragraph_is_the_lede_unwrapped():
    words = " ".join(["lede"] * 40)
    assert first_paragraph(f'<p>{words} <a href="https://a.example">x</a></p><p>Second.</p>') == words + " x"
    assert first_paragraph("") == ""


# --- malformed front matter names the line of the file, in plain words (issue 9, item 12f) -------

YAML_MISTAKES = {
    # name: (front matter lines after '---', line of the file named, words the message must carry)
    "colon-in-a-value": (['headline: "Council votes"', "published: 2026-11-30T19:40:00-06:00",
                          "byline: By Jordan Pike: staff writer"], 4, "quotes"),
    "quote-never-closed": (['headline: "Council votes', "published: 2026-11-30T19:40:00-06:00", "byline: Jo"], 2,
                           "never closed"),
    "list-never-closed": (["headline: Council votes", "tags: [national, politics", "byline: Jo"], 3, "never closed"),
    "tab-indent": (["headline: Council votes", "image:", "\tsrc: https://example.org/a.jpg"], 4, "tab"),
}


@pytest.mark.parametrize("lines,line,words", list(YAML_MISTAKES.values()), ids=list(YAML_MISTAKES))
def test_malformed_front_matter_names_the_file_line_in_plain_words(tmp_path, lines, line, words):
    from digest.sources.stories import load_folder

    (tmp_path / "story.md").write_text("---\n" + "\n".join(lines) + "\n---\nThe lede.\n", encoding="utf-8")
    result = load_folder(tmp_path)
    (problem,) = result.problems
    assert problem.line == line, str(problem)
    assert words in problem.message, problem.message


def test_a_stories_path_that_is_a_file_says_so(tmp_path):
    from digest.sources.stories import load_folder

    path = tmp_path / "stories.md"
    path.write_text("not a folder", encoding="utf-8")
    [problem] = load_folder(path).problems
    assert "is a file, not a folder" in problem.message and problem.file == str(path)
