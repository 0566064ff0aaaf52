"""Tests for fleet.pki.keys: key kinds, the process-pool KeyFactory, PEM in/out, safe key files."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from certfleet.fleet.errors import InputError, PemError
from certfleet.fleet.pki.keys import (
    KEY_KINDS,
    KeyFactory,
    PrivateKey,
    describe_key,
    generate_key,
    key_kind,
    key_to_pem,
    load_key_pem,
    public_key_id,
    same_public_key,
    write_atomic,
    write_private_key,
)
from certfleet.fleet.secrets import Secret

PASSPHRASE = "keys-test-passphrase-5d1f"


@pytest.fixture(scope="module")
def factory() -> Iterator[KeyFactory]:
    with KeyFactory() as keys:
        yield keys


@pytest.fixture(scope="module")
def pool_keys(factory: KeyFactory) -> dict[str, PrivateKey]:
    """One key of every kind, made in the pool, all at once (RSA-4096 is the slow one)."""

    async def make() -> list[PrivateKey]:
        return await asyncio.gather(*(factory.generate(kind) for kind in KEY_KINDS))

    return dict(zip(KEY_KINDS, asyncio.run(make()), strict=True))


def _usable(key: PrivateKey) -> None:
    data = b"certfleet"
    if isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        key.public_key().verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
        key.public_key().verify(sig, data, ec.ECDSA(hashes.SHA256()))


# ------------------------------------------------------------------------ generation


@pytest.mark.parametrize("kind", ["rsa-2048", "ec-p256", "ec-p384"])
def test_generate_key_in_process(kind: str) -> None:
    key = generate_key(kind)
    assert key_kind(key) == kind
    _usable(key)


def test_unknown_key_kind_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"unknown key type 'rsa-1024'.*rsa-2048"):
        generate_key("rsa-1024")


def test_factory_makes_every_kind_usable(pool_keys: dict[str, PrivateKey]) -> None:
    for kind, key in pool_keys.items():
        assert key_kind(key) == kind
        _usable(key)
    assert pool_keys["rsa-4096"].key_size == 4096  # type: ignore[union-attr]


def test_factory_works_in_other_processes(
    factory: KeyFactory, pool_keys: dict[str, PrivateKey]
) -> None:
    assert factory.worker_pids
    assert os.getpid() not in factory.worker_pids
    assert factory.workers == (os.cpu_count() or 1)


def test_factory_keeps_the_event_loop_free(factory: KeyFactory) -> None:
    """While keys are made, the loop keeps ticking: generation overlaps with network I/O."""

    async def main() -> tuple[int, float]:
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        await asyncio.gather(*(factory.generate("rsa-2048") for _ in range(6)))
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        return ticks, elapsed

    ticks, elapsed = asyncio.run(main())
    # a blocked loop would tick about once; a free one about every 5 ms
    assert ticks >= max(3, int(elapsed / 0.005 * 0.3))


def test_factory_rejects_unknown_kind_before_using_the_pool() -> None:
    keys = KeyFactory(workers=1)
    with pytest.raises(InputError, match="unknown key type"):
        asyncio.run(keys.generate("dsa-1024"))
    keys.close()


def test_closed_factory_refuses_work_and_close_twice_is_fine() -> None:
    keys = KeyFactory(workers=1)
    key = asyncio.run(keys.generate("ec-p256"))
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    keys.close()
    keys.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(keys.generate("ec-p256"))


def test_factory_as_async_context_manager() -> None:
    async def main() -> PrivateKey:
        async with KeyFactory(workers=1) as keys:
            return await keys.generate("ec-p384")

    assert key_kind(asyncio.run(main())) == "ec-p384"


def test_factory_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        KeyFactory(workers=0)


# --------------------------------------------------------------------------- PEM


def test_pem_round_trip_plain_and_encrypted(pool_keys: dict[str, PrivateKey]) -> None:
    secret = Secret(PASSPHRASE)
    for key in (pool_keys["rsa-2048"], pool_keys["ec-p256"]):
        plain = key_to_pem(key, None)
        assert plain.startswith(b"-----BEGIN PRIVATE KEY-----")
        assert same_public_key(load_key_pem(plain, None, source="k.pem"), key)
        locked = key_to_pem(key, secret)
        assert locked.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        assert PASSPHRASE.encode() not in locked
        assert same_public_key(load_key_pem(locked, secret, source="k.pem"), key)


def test_wrong_passphrase_is_a_clear_pem_error(pool_keys: dict[str, PrivateKey]) -> None:
    locked = key_to_pem(pool_keys["ec-p256"], Secret(PASSPHRASE))
    wrong = "not-the-passphrase-8c2e"
    with pytest.raises(PemError) as info:
        load_key_pem(locked, Secret(wrong), source="keys/room-1.key.pem")
    message = str(info.value)
    assert "keys/room-1.key.pem" in message and "wrong passphrase" in message
    assert wrong not in message and PASSPHRASE not in message


def test_encrypted_key_without_passphrase(pool_keys: dict[str, PrivateKey]) -> None:
    locked = key_to_pem(pool_keys["ec-p256"], Secret(PASSPHRASE))
    with pytest.raises(PemError, match=r"k\.pem: the private key is encrypted; give its passphrase"):
        load_key_pem(locked, None, source="k.pem")


def test_not_a_key(pool_keys: dict[str, PrivateKey]) -> None:
    with pytest.raises(PemError, match=r"notes\.txt: holds no private key"):
        load_key_pem(b"hello\n", None, source="notes.txt")
    two = key_to_pem(pool_keys["ec-p256"], None) + key_to_pem(pool_keys["ec-p384"], None)
    with pytest.raises(PemError, match="holds 2 private keys"):
        load_key_pem(two, None, source="two.pem")
    broken = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(PemError, match="does not decode"):
        load_key_pem(broken, None, source="broken.pem")


def test_ed25519_key_is_refused() -> None:
    pem = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(PemError, match="Ed25519 key; RoomOS devices take RSA or EC keys"):
        load_key_pem(pem, None, source="ed.pem")


def test_traditional_openssl_keys_load(pool_keys: dict[str, PrivateKey]) -> None:
    key = pool_keys["rsa-2048"]
    pkcs1 = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.BestAvailableEncryption(PASSPHRASE.encode()),
    )
    assert b"Proc-Type: 4,ENCRYPTED" in pkcs1
    with pytest.raises(PemError, match="encrypted"):
        load_key_pem(pkcs1, None, source="old.pem")
    assert same_public_key(load_key_pem(pkcs1, Secret(PASSPHRASE), source="old.pem"), key)


def test_key_inside_a_bundle_is_found(pool_keys: dict[str, PrivateKey]) -> None:
    from certfleet.fleet.pki.local_ca import create_ca

    ca = create_ca("Bundle CA")
    data = ca.cert_pem.encode() + key_to_pem(pool_keys["ec-p256"], None)
    assert same_public_key(load_key_pem(data, None, source="b.pem"), pool_keys["ec-p256"])


def test_key_identity_helpers(pool_keys: dict[str, PrivateKey]) -> None:
    rsa_key, ec_key = pool_keys["rsa-2048"], pool_keys["ec-p256"]
    assert public_key_id(rsa_key) == public_key_id(rsa_key.public_key())
    assert len(public_key_id(ec_key)) == 64
    assert not same_public_key(rsa_key, ec_key)
    assert describe_key(rsa_key).startswith("RSA-2048, SPKI SHA-256 ")
    assert describe_key(ec_key).startswith("EC secp256r1")


# ------------------------------------------------------------------------ key files


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_key_file_is_0600_whatever_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        path = tmp_path / "room-1.key.pem"
        write_private_key(path, b"-----BEGIN PRIVATE KEY-----\n")
    finally:
        os.umask(old)
    assert _mode(path) == 0o600
    assert path.read_bytes() == b"-----BEGIN PRIVATE KEY-----\n"
    assert [p.name for p in tmp_path.iterdir()] == ["room-1.key.pem"]  # no temp file left


def test_replacing_a_world_readable_file_gives_0600(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private_key(path, b"new")
    assert path.read_bytes() == b"new" and _mode(path) == 0o600


def test_key_file_is_never_readable_by_others_while_written(tmp_path: Path) -> None:
    """Watch the folder while big key files are written: no file ever shows group/other bits."""
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            for entry in os.scandir(tmp_path):
                with contextlib.suppress(FileNotFoundError):
                    seen.append(stat.S_IMODE(entry.stat(follow_symlinks=False).st_mode))

    old = os.umask(0)
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for index in range(30):
            write_private_key(tmp_path / f"k{index}.pem", b"x" * 200_000)
    finally:
        done.set()
        watcher.join()
        os.umask(old)
    assert seen, "the watcher saw no file"
    assert all(mode & 0o077 == 0 for mode in seen), sorted({oct(m) for m in seen})


def test_no_overwrite_keeps_the_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "ca.key"
    write_private_key(path, b"first", overwrite=False)
    with pytest.raises(FileExistsError):
        write_private_key(path, b"second", overwrite=False)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["ca.key"]


def test_write_atomic_sets_the_mode_exactly(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_atomic(tmp_path / "csr.pem", b"csr", mode=0o644)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "csr.pem") == 0o644


def test_factory_recovers_from_a_dead_worker() -> None:
    async def main() -> PrivateKey:
        async with KeyFactory(workers=1) as keys:
            await keys.generate("ec-p256")
            [pid] = keys.worker_pids
            os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)
            # several generations see the broken pool at once: one fresh pool serves them all
            made = await asyncio.gather(*(keys.generate("ec-p256") for _ in range(4)))
            assert len(keys.worker_pids) == 2  # a new worker made the later keys
            return made[0]

    _usable(asyncio.run(main()))


def test_no_overwrite_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_link(src: object, dst: object) -> None:
        raise PermissionError(1, "hard links not supported")

    monkeypatch.setattr(os, "link", no_link)
    write_private_key(tmp_path / "k.pem", b"one", overwrite=False)
    with pytest.raises(FileExistsError):
        write_private_key(tmp_path / "k.pem", b"two", overwrite=False)
    assert (tmp_path / "k.pem").read_bytes() == b"one"
    assert _mode(tmp_path / "k.pem") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k.pem"]


def test_key_workers_exit_when_their_owner_is_killed(tmp_path: Path) -> None:
    """A run killed with SIGKILL must not leave its key workers (and their forkserver)
    behind: they watch their owner and exit within a couple of seconds."""
    import subprocess
    import sys
    import time

    script = tmp_path / "owner.py"
    script.write_text(
        "import asyncio, os\n"
        "from certfleet.fleet.pki.keys import KeyFactory\n"
        "async def main():\n"
        "    factory = KeyFactory(2)\n"
        "    await asyncio.gather(factory.generate('ec-p256'), factory.generate('ec-p256'))\n"
        "    print(' '.join(map(str, sorted(factory.worker_pids))), flush=True)\n"
        "    os.kill(os.getpid(), 9)\n"
        "if __name__ == '__main__':\n"
        "    asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == -9, done.stderr
    workers = [int(pid) for pid in done.stdout.split()]
    assert workers
    deadline = time.monotonic() + 10
    alive = workers
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
                 and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()]
    assert alive == [], f"key workers {alive} outlived their killed owner"


# ------------------------------------------------------- key encryption strength


def _pbes2(pem: bytes) -> dict[str, object]:
    from asn1crypto import keys as asn1_keys
    from asn1crypto import pem as asn1_pem

    _, _, der = asn1_pem.unarmor(pem)
    info = asn1_keys.EncryptedPrivateKeyInfo.load(der)
    algorithm = info["encryption_algorithm"]
    assert algorithm["algorithm"].native == "pbes2"
    params = algorithm["parameters"]
    kdf = params["key_derivation_func"]["parameters"]
    return {"kdf": params["key_derivation_func"]["algorithm"].native,
            "iterations": kdf["iteration_count"].native,
            "prf": kdf["prf"]["algorithm"].native,
            "cipher": params["encryption_scheme"]["algorithm"].native}


def test_keys_are_encrypted_with_a_current_kdf_strength() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key_to_pem(key, Secret("a long enough passphrase"))
    assert b"BEGIN ENCRYPTED PRIVATE KEY" in pem
    # OWASP's 2023 figure for PBKDF2-HMAC-SHA256; cryptography's default was 2048
    assert _pbes2(pem) == {"kdf": "pbkdf2", "iterations": 600_000, "prf": "sha256",
                           "cipher": "aes256_cbc"}
    loaded = load_key_pem(pem, Secret("a long enough passphrase"), source="k.pem")
    assert same_public_key(loaded, key)
    with pytest.raises(PemError, match="wrong passphrase"):
        load_key_pem(pem, Secret("a long enough passphrasf"), source="k.pem")


def test_openssl_reads_the_encrypted_keys(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("no openssl binary")
    key = rsa.generate_private_key(65537, 2048)
    path = tmp_path / "k.pem"
    path.write_bytes(key_to_pem(key, Secret("passphrase-for-openssl")))
    out = subprocess.run(["openssl", "pkey", "-in", str(path), "-passin",
                          "pass:passphrase-for-openssl", "-pubout"],
                         capture_output=True, check=True).stdout
    assert out == key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def test_keys_encrypted_the_old_way_still_load() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    old = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.BestAvailableEncryption(b"old-passphrase"))
    assert _pbes2(old)["iterations"] == 2048
    assert same_public_key(load_key_pem(old, Secret("old-passphrase"), source="old"), key)
    legacy = key.private_bytes(serialization.Encoding.PEM,
                               serialization.PrivateFormat.TraditionalOpenSSL,
                               serialization.BestAvailableEncryption(b"old-passphrase"))
    assert same_public_key(load_key_pem(legacy, Secret("old-passphrase"), source="old"), key)


def test_hundreds_of_keys_under_one_passphrase_cost_little() -> None:
    # A rotation of hundreds of devices encrypts every key with the journal passphrase and a
    # resume decrypts them: the expensive derivation is done once per passphrase, not per key.
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(300)]
    passphrase = Secret("journal passphrase for a big fleet")
    started = time.perf_counter()
    pems = [key_to_pem(key, passphrase) for key in keys]
    loaded = [load_key_pem(pem, passphrase, source="journal") for pem in pems]
    took = time.perf_counter() - started
    assert all(same_public_key(a, b) for a, b in zip(keys, loaded, strict=True))
    assert took < 5.0, took


def test_a_key_sealed_for_one_trip_to_a_device_gets_a_light_kdf() -> None:
    # its passphrase is 192 random bits made for that upload: stretching it adds nothing,
    # and the device (not a workstation) has to decrypt it
    key = ec.generate_private_key(ec.SECP256R1())
    one_time = Secret("Zq3kR8vN2pL5xW9cT4hJ7mB1sF6dG0aE")
    pem = key_to_pem(key, one_time, one_time=True)
    assert _pbes2(pem)["iterations"] == 2048
    assert same_public_key(serialization.load_pem_private_key(
        pem, one_time.reveal().encode()), key)


@pytest.mark.parametrize("iterations", [1, 127, 128, 255, 256, 2048, 32768, 600_000, 8_388_608])
@pytest.mark.parametrize("sealed_size", [16, 112, 128, 256, 1216, 2432, 65536])
def test_encrypted_key_der_is_what_asn1crypto_writes(iterations: int, sealed_size: int) -> None:
    # certfleet writes the PBES2 structure by hand (for speed): byte for byte the DER an
    # ASN.1 library writes for it, whatever the lengths and the iteration count
    from asn1crypto import algos, core
    from asn1crypto import keys as asn1_keys
    from asn1crypto import pem as asn1_pem

    from certfleet.fleet.pki import pkcs8

    salt, iv, sealed = os.urandom(16), os.urandom(16), os.urandom(sealed_size)
    params = algos.Pbes2Params({
        "key_derivation_func": {
            "algorithm": "pbkdf2",
            "parameters": {
                "salt": algos.Pbkdf2Salt(name="specified", value=core.OctetString(salt)),
                "iteration_count": iterations,
                "prf": {"algorithm": "sha256", "parameters": core.Null()},
            },
        },
        "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
    })
    expected = asn1_keys.EncryptedPrivateKeyInfo({
        "encryption_algorithm": {"algorithm": "pbes2", "parameters": params},
        "encrypted_data": sealed,
    }).dump()
    der = pkcs8.encrypted_private_key_info(salt, iterations, iv, sealed)
    assert der == expected
    assert pkcs8._armor(der) == asn1_pem.armor("ENCRYPTED PRIVATE KEY", expected)


def _inconsistent_rsa_pkcs8() -> bytes:
    """A PKCS#8 RSA key whose private exponent does not match its modulus: OpenSSL's RSA
    consistency check refuses it."""
    from asn1crypto import keys as asn1_keys  # type: ignore[import-untyped]

    good = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    der = good.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    info = asn1_keys.PrivateKeyInfo.load(der)
    inner = info["private_key"].parsed
    inner["private_exponent"] = inner["private_exponent"].native + 2
    return bytes(asn1_keys.PrivateKeyInfo({
        "version": 0, "private_key_algorithm": info["private_key_algorithm"],
        "private_key": inner}).dump(force=True))


def test_only_certfleets_own_encrypted_keys_skip_the_rsa_consistency_check() -> None:
    """``own_key`` (the journal's keys, made by certfleet, kept encrypted) skips OpenSSL's RSA
    check, which costs as much as making the key; a key file from anywhere else, or an
    unencrypted one even when said to be certfleet's, is still checked and refused."""
    from certfleet.fleet.pki import pkcs8

    bad = _inconsistent_rsa_pkcs8()
    secret = Secret(PASSPHRASE)
    sealed = pkcs8.encrypt(bad, PASSPHRASE.encode())
    with pytest.raises(PemError, match="cannot be decrypted"):
        load_key_pem(sealed, secret, source="someone's key")
    assert isinstance(load_key_pem(sealed, secret, source="journal key 1", own_key=True),
                      rsa.RSAPrivateKey)
    plain = (b"-----BEGIN " + b"PRIVATE KEY-----\n" + base64.encodebytes(bad)
             + b"-----END " + b"PRIVATE KEY-----\n")
    with pytest.raises(PemError):
        load_key_pem(plain, None, source="key.pem", own_key=True)
    # a sound key of certfleet's own comes back whole either way
    good = generate_key("ec-p256")
    own = load_key_pem(key_to_pem(good, secret), secret, source="journal key 2", own_key=True)
    assert same_public_key(own, good)
