import pytest

from services.identity.handles import InvalidHandle, normalize


@pytest.mark.parametrize(
    ("network", "raw", "expected"),
    [
        ("x", "@Foo", "foo"),
        ("x", "  foo  ", "foo"),
        ("x", "https://twitter.com/Foo", "foo"),
        ("x", "https://x.com/foo", "foo"),
        ("x", "x.com/Foo?s=20", "foo"),
        ("x", "https://mobile.twitter.com/foo/status/123", "foo"),
        ("instagram", "https://www.instagram.com/foo/", "foo"),
        ("instagram", "@Foo.Bar_", "foo.bar_"),
        ("facebook", "https://www.facebook.com/Jane.Doe", "jane.doe"),
        ("facebook", "https://www.facebook.com/profile.php?id=100012345", "100012345"),
        ("linkedin", "https://www.linkedin.com/in/Jane-Doe/", "jane-doe"),
        ("tiktok", "https://www.tiktok.com/@Foo.bar", "foo.bar"),
        ("tiktok", "@foo", "foo"),
    ],
)
def test_handles_and_profile_urls_reduce_to_the_handle(network, raw, expected):
    assert normalize(network, raw) == expected


@pytest.mark.parametrize(
    ("network", "raw"),
    [
        ("x", "https://instagram.com/foo"),  # another network's profile
        ("x", "has space"),
        ("x", "waytoolonghandle16"),
        ("x", "https://x.com/search"),
        ("linkedin", "https://linkedin.com/company/acme"),
        ("instagram", ""),
        ("myspace", "foo"),
    ],
)
def test_what_is_not_a_handle_is_refused_with_a_reason(network, raw):
    with pytest.raises(InvalidHandle) as error:
        normalize(network, raw)
    assert str(error.value)


def test_a_handle_that_breaks_url_parsing_is_refused_not_a_crash():
    with pytest.raises(InvalidHandle):
        normalize("x", "]/")
