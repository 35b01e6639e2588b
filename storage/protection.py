"""What each storage profile protects the footage against, said plainly (README, ``health``).

Pure text by profile: ``embedded`` (the SeaweedFS this service runs on its own box, locked down
by :mod:`storage.seaweed`) or ``external`` (an S3 endpoint in ``LABWITNESS_S3_ENDPOINT``).
Messages are zh-CN first, then English.
"""

from __future__ import annotations

from typing import Literal

Profile = Literal["embedded", "external"]

_COMMON = ("任何人（包括管理员与本服务自身的凭据）都无法通过 S3 删除或缩短合规锁定期内的录像 / nobody, administrators and "
           "the service's own credentials included, can delete or shorten locked footage through S3 before its "
           "retain-until")
_TEXT: dict[Profile, dict[str, object]] = {
    "embedded": {
        "protects_against": [
            _COMMON,
            "本机除 S3 外的所有接口都拒绝未认证请求（filer/master/volume HTTP 已关闭或需签名令牌，gRPC 需本机专用证书）"
            " / every API of the store but S3 refuses unauthenticated requests (filer and master HTTP off, volume "
            "HTTP needs signed tokens, gRPC needs this installation's own certificate)",
            "除 root 外的所有本地用户：密钥与数据目录仅本服务用户可读（0600/0700） / every local user but root: the "
            "store's keys and data are readable by the service's user alone (0600/0700)",
        ],
        "does_not_protect_against": [
            "本机 root 可以直接从磁盘删除或篡改文件；这只能被检测，不能被阻止：每小时的封存摘要在本机之外见证，"
            "或使用另一管理域中的外部存储 / root on this box can delete or alter files directly on disk; that can only "
            "be detected, not prevented: by the hourly seals witnessed outside the box, or prevented by an external "
            "store in another administrative domain",
        ],
    },
    "external": {
        "protects_against": [
            _COMMON,
            "本机任何用户，包括 root：锁定由另一管理域中的存储执行（前提是其管理员不是本机的管理员） / every user of "
            "this box, root included: the lock is enforced by a store in another administrative domain (provided "
            "its administrators are not this box's)",
        ],
        "does_not_protect_against": [
            "外部存储自身的管理员或其所在主机的 root；以及持有本服务 S3 凭据者读取录像 / the external store's own "
            "administrators or root on its hosts; and reading of footage by whoever holds the service's S3 keys",
        ],
    },
}


def storage_protection(profile: Profile) -> dict[str, object]:
    """``{"profile", "protects_against": [...], "does_not_protect_against": [...]}`` for ``health``."""
    return {"profile": profile, **_TEXT[profile]}
