"""Property tests: the PEM readers never fail with anything but PemError, whatever the bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from certfleet.fleet.errors import PemError
from certfleet.fleet.pki.bundle import parse_bundle
from certfleet.fleet.pki.certs import parse_pem_certificates
from certfleet.fleet.pki.local_ca import create_ca

CA = create_ca("Property CA")
PEM = CA.cert_pem.encode()

fragments = st.one_of(
    st.binary(max_size=200),
    st.just(PEM),
    st.just(b"-----BEGIN CERTIFICATE-----\n"),
    st.just(b"-----END CERTIFICATE-----\n"),
    st.just(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    st.just(PEM[:200]),
    st.just(PEM.replace(b"M", b"!")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(fragments, max_size=5))
def test_certificate_reader_only_raises_pem_errors(parts: list[bytes]) -> None:
    data = b"".join(parts)
    try:
        certs = parse_pem_certificates(data, source="fuzz.pem")
    except PemError as exc:
        assert "fuzz.pem" in str(exc)
    else:
        assert certs


@settings(max_examples=300, deadline=None)
@given(st.lists(fragments, max_size=5))
def test_bundle_reader_only_raises_pem_errors(parts: list[bytes]) -> None:
    try:
        bundle = parse_bundle(b"".join(parts), source="fuzz.pem")
    except PemError as exc:
        assert "fuzz.pem" in str(exc)
    else:
        assert bundle.leaf is not None
