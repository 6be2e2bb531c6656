import hashlib

from django_cloudevents_bridge.notifications import tokens


def test_new_tokens_are_random_urlsafe_and_only_their_digest_is_kept():
    made = [tokens.new() for _ in range(50)]
    assert len({token for token, _ in made}) == 50
    for token, digest in made:
        assert len(token) >= 43  # 32 bytes, base64
        assert set(token) <= set(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        )
        assert digest == hashlib.sha256(token.encode()).hexdigest()
        assert token not in digest


def test_digest_is_sha256_hex():
    assert tokens.digest("abc") == hashlib.sha256(b"abc").hexdigest()


def test_matches_only_the_token_of_the_digest():
    token, digest = tokens.new()
    other, _ = tokens.new()
    assert tokens.matches(token, digest)
    assert not tokens.matches(other, digest)
    assert not tokens.matches(token[:-1], digest)
    assert not tokens.matches(digest, digest)  # the digest is no token


def test_an_empty_stored_digest_matches_nothing():
    assert not tokens.matches("", "")
    assert not tokens.matches(tokens.new()[0], "")
    assert not tokens.matches(None, tokens.digest(""))  # type: ignore[arg-type]
