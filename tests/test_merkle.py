"""retention.merkle: RFC 6962 roots (the Certificate Transparency test vectors), audit paths
for every leaf of every tree size up to 40, and proofs that must fail."""

from __future__ import annotations

import hashlib

import pytest

from retention import merkle

# RFC 6962 reference leaves and roots (certificate-transparency's merkle tree test data)
CT_LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                        "606162636465666768696a6b6c6d6e6f")]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def mth(leaves: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH, recursively, as the reference."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))


@pytest.mark.parametrize("n, expected", list(enumerate(CT_ROOTS, start=1)))
def test_roots_match_rfc6962_vectors(n, expected):
    assert merkle.root([merkle.leaf_hash(d) for d in CT_LEAVES[:n]]).hex() == expected


def test_empty_tree_and_domain_separation():
    assert merkle.root([]) == hashlib.sha256(b"").digest()
    a, b = merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b")
    # a leaf whose data is the two children's hashes is not the node over them
    assert merkle.leaf_hash(a + b) != merkle.node_hash(a, b)
    assert merkle.leaf_hash(b"x") != hashlib.sha256(b"x").digest()


@pytest.mark.parametrize("n", list(range(1, 41)))
def test_every_proof_of_every_size(n):
    leaves = [merkle.leaf_hash(f"leaf-{i}".encode()) for i in range(n)]
    r = merkle.root(leaves)
    assert r == mth(leaves)
    everyone = merkle.all_proofs(leaves)
    for i in range(n):
        path = merkle.inclusion_proof(leaves, i)
        assert path == everyone[i]
        assert merkle.verify_inclusion(leaves[i], i, n, path, r)
        # the same path at the wrong position, for the wrong leaf, or against another size fails
        if n > 1:
            assert not merkle.verify_inclusion(leaves[i], (i + 1) % n, n, path, r)
            assert not merkle.verify_inclusion(leaves[(i + 1) % n], i, n, path, r)


@pytest.mark.parametrize("case", ["flipped", "short", "long", "index_out", "other_root"])
def test_tampered_proofs_fail(case):
    leaves = [merkle.leaf_hash(bytes([i])) for i in range(13)]
    r, i = merkle.root(leaves), 6
    path = merkle.inclusion_proof(leaves, i)
    index, size, root = i, len(leaves), r
    if case == "flipped":
        path[1] = bytes([path[1][0] ^ 1]) + path[1][1:]
    elif case == "short":
        path = path[:-1]
    elif case == "long":
        path = path + [leaves[0]]
    elif case == "index_out":
        index = 13
    else:
        root = merkle.root(leaves[:12])
    assert not merkle.verify_inclusion(leaves[i], index, size, path, root)


def test_proof_of_missing_index_raises():
    with pytest.raises(IndexError):
        merkle.inclusion_proof([merkle.leaf_hash(b"a")], 1)
