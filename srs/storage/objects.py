"""Where finished recordings are kept for good: a folder (``file://``) or an S3-compatible bucket (``s3://``).

One small interface so the uploader, the API, retention and exports never care which: ``put`` (with
the checksum verified), ``head``, ``read`` (whole or a byte range, streamed), ``delete`` and
``presign``. Keys are relative, ``/``-separated and checked like ids: no key built from an index row
can name something outside the store's folder or prefix.

Every store failure is an :class:`ObjectStoreError`; :class:`StoreUnavailable` says "try again later"
(the network or the server), :class:`ChecksumMismatch` says the bytes are not the ones we meant.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from srs.storage.errors import StorageError

CHUNK_SIZE = 1 << 20
_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$")
DEFAULT_PART_SIZE = 8 * 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 16 * 1024 * 1024


class ObjectStoreError(StorageError):
    """The object store refused or failed an operation."""


class StoreUnavailable(ObjectStoreError):
    """The store could not be reached or answered with a server error: worth retrying later."""


class ChecksumMismatch(ObjectStoreError):
    """Bytes whose digest is not the one the index keeps (local file or stored object)."""


class ObjectNotFound(ObjectStoreError):
    """No object under that key."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    sha256: str | None = None
    """What the store says the object's sha256 is (S3 metadata), None when it keeps none."""


@dataclass(frozen=True, slots=True)
class FileDigest:
    """What one pass over a local file learns: its size, sha256, md5 and the md5 of each part."""

    size: int
    sha256: str
    md5: str
    part_md5s: tuple[bytes, ...]

    def multipart_etag(self) -> str:
        joined = hashlib.md5(b"".join(self.part_md5s), usedforsecurity=False).hexdigest()
        return f"{joined}-{len(self.part_md5s)}"


def digest_file(path: Path | str, part_size: int = DEFAULT_PART_SIZE) -> FileDigest:
    sha = hashlib.sha256()
    whole = hashlib.md5(usedforsecurity=False)
    parts: list[bytes] = []
    size = 0
    with open(path, "rb") as handle:
        while True:
            part = hashlib.md5(usedforsecurity=False)
            taken = 0
            while taken < part_size:
                chunk = handle.read(min(CHUNK_SIZE, part_size - taken))
                if not chunk:
                    break
                sha.update(chunk)
                whole.update(chunk)
                part.update(chunk)
                taken += len(chunk)
            if taken == 0:
                break
            parts.append(part.digest())
            size += taken
    return FileDigest(size, sha.hexdigest(), whole.hexdigest(), tuple(parts))


def check_key(key: str) -> str:
    if not isinstance(key, str) or len(key) > 512 or not _KEY.fullmatch(key):
        raise ObjectStoreError(f"invalid object key {key!r}")
    return key


class ObjectStore(Protocol):
    url: str
    """Where the store is, for logs and ``srs recordings show`` (never with credentials)."""

    remote: bool
    """False for the folder store: presigned links and redirects need a remote one."""

    def put(self, key: str, path: Path, sha256: str) -> ObjectInfo:
        """Store the file under ``key`` and return what the store then reports, checked against
        ``sha256`` (raises ChecksumMismatch if the local file or the stored object differs)."""
        ...

    def head(self, key: str) -> ObjectInfo | None: ...

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        """The object's bytes from ``start`` (``length`` of them, or to the end), in chunks."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def verify(self, key: str, sha256: str) -> None:
        """Read the whole object back and hash it: ChecksumMismatch unless it is ``sha256``."""
        ...

    def presign(self, key: str, expires_s: int, filename: str | None = None) -> str | None:
        """A URL that fetches the object without credentials until it expires; None if unsupported."""
        ...

    def close(self) -> None: ...


# ---- a folder -------------------------------------------------------------------------------


def verify_by_reading(store: ObjectStore, key: str, sha256: str) -> None:
    digest = hashlib.sha256()
    for chunk in store.read(key):
        digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ChecksumMismatch(f"object {key} read back does not match its sha256")


class FileObjectStore:
    """Objects as files under one root folder: written to a temporary name, fsynced, re-read and
    checked, then renamed into place, so a reader never sees a half-written object."""

    remote = False

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()
        self.url = self.root.as_uri()

    def _path(self, key: str) -> Path:
        path = (self.root / check_key(key)).resolve()
        if self.root not in path.parents:
            raise ObjectStoreError(f"object key {key!r} leaves the store")
        return path

    def put(self, key: str, path: Path, sha256: str) -> ObjectInfo:
        target = self._path(key)
        local = digest_file(path)
        if local.sha256 != sha256:
            raise ChecksumMismatch(f"local file {Path(path).name} does not match its sha256")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = target.with_name(f".{target.name}.{os.getpid()}.partial")
            with open(path, "rb") as source, open(temp, "wb") as sink:
                while chunk := source.read(CHUNK_SIZE):
                    sink.write(chunk)
                sink.flush()
                os.fsync(sink.fileno())
            stored = digest_file(temp)
            if stored.sha256 != sha256:
                temp.unlink(missing_ok=True)
                raise ChecksumMismatch(f"object {key} does not match its sha256 after writing")
            os.replace(temp, target)
        except OSError as exc:
            raise StoreUnavailable(f"cannot write {key}: {exc}") from exc
        info = self.head(key)
        if info is None:
            raise StoreUnavailable(f"object {key} vanished after writing")
        return ObjectInfo(key, info.size, info.etag, sha256)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            stat = self._path(key).stat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreUnavailable(f"cannot stat {key}: {exc}") from exc
        return ObjectInfo(key, stat.st_size, f"{stat.st_size:x}-{stat.st_mtime_ns:x}")

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator it is handed to
        except FileNotFoundError as exc:
            raise ObjectNotFound(f"no object {key}") from exc
        except OSError as exc:
            raise StoreUnavailable(f"cannot read {key}: {exc}") from exc
        return _file_chunks(handle, start, length)

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot delete {key}: {exc}") from exc

    def verify(self, key: str, sha256: str) -> None:
        verify_by_reading(self, key, sha256)

    def presign(self, key: str, expires_s: int, filename: str | None = None) -> str | None:
        return None

    def close(self) -> None:
        pass


def _file_chunks(handle: Any, start: int, length: int | None) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = length
        while remaining is None or remaining > 0:
            chunk = handle.read(CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining))
            if not chunk:
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk


# ---- S3 -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Options:
    """How to reach an S3-compatible service; None lets the usual environment decide."""

    endpoint: str | None = None
    region: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD
    part_size: int = DEFAULT_PART_SIZE
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0


def options_from_env(options: S3Options, environ: Mapping[str, str]) -> S3Options:
    """Fill what the configuration left empty from ``AWS_ENDPOINT_URL`` (``_S3``), ``AWS_REGION``
    (or ``AWS_DEFAULT_REGION``), ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``."""

    def first(*names: str) -> str | None:
        return next((environ[n] for n in names if environ.get(n)), None)

    return S3Options(
        endpoint=options.endpoint or first("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
        region=options.region or first("AWS_REGION", "AWS_DEFAULT_REGION") or "us-east-1",
        access_key=options.access_key or first("AWS_ACCESS_KEY_ID"),
        secret_key=options.secret_key or first("AWS_SECRET_ACCESS_KEY"),
        multipart_threshold=options.multipart_threshold,
        part_size=options.part_size,
        connect_timeout_s=options.connect_timeout_s,
        read_timeout_s=options.read_timeout_s,
    )


class S3ObjectStore:
    """A bucket (and optional key prefix) of any S3-compatible service, through boto3.

    Checksums: every PUT (and every part of a multipart upload) carries ``Content-MD5``, which
    every S3 implementation checks before it stores anything; the sha256 goes along as object
    metadata. After the upload, HEAD must report the size, that sha256 and an ETag equal to the
    md5 (or the multipart md5-of-md5s) computed locally; a store whose ETag is neither (encrypted
    buckets) gets the object read back and hashed.
    """

    remote = True

    def __init__(self, bucket: str, prefix: str, options: S3Options) -> None:
        import boto3
        from botocore.config import Config as BotoConfig

        if not bucket:
            raise ObjectStoreError("s3:// URL needs a bucket")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.options = options
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = boto3.session.Session().client(
            "s3",
            endpoint_url=options.endpoint,
            region_name=options.region,
            aws_access_key_id=options.access_key,
            aws_secret_access_key=options.secret_key,
            config=BotoConfig(
                signature_version="s3v4",
                # A ranged GET has no whole-object checksum to validate; non-AWS servers do not
                # compute the new CRC checksums. The Content-MD5 we send is checked by all.
                response_checksum_validation="when_required",
                request_checksum_calculation="when_required",
                s3={"addressing_style": "path" if options.endpoint else "auto"},
                connect_timeout=options.connect_timeout_s,
                read_timeout=options.read_timeout_s,
                retries={"max_attempts": 2, "mode": "standard"},
                max_pool_connections=32,
            ),
        )

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, what: str, function: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return function(**kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ObjectNotFound(f"{what}: not found") from exc
            if code in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"):
                raise ChecksumMismatch(f"{what}: the store refused the bytes ({code})") from exc
            if status >= 500 or status in (0, 408, 429):
                raise StoreUnavailable(f"{what}: {code or status} from the store") from exc
            raise ObjectStoreError(f"{what}: {code or status} {error.get('Message', '')}".strip()) from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"{what}: {exc}") from exc

    def put(self, key: str, path: Path, sha256: str) -> ObjectInfo:
        full = self._key(key)
        local = digest_file(path, self.options.part_size)
        if local.sha256 != sha256:
            raise ChecksumMismatch(f"local file {Path(path).name} does not match its sha256")
        metadata = {"sha256": sha256}
        if local.size < self.options.multipart_threshold:
            with open(path, "rb") as handle:
                body = handle.read()
            self._call(
                f"put {key}", self._client.put_object, Bucket=self.bucket, Key=full, Body=body,
                ContentMD5=_b64(bytes.fromhex(local.md5)), ContentType="application/octet-stream",
                Metadata=metadata,
            )
        else:
            self._multipart(key, full, path, local, metadata)
        info = self.head(key)
        if info is None:
            raise StoreUnavailable(f"object {key} is not there after the upload")
        self._verify(key, info, local)
        return info

    def _multipart(
        self, key: str, full: str, path: Path, local: FileDigest, metadata: dict[str, str]
    ) -> None:
        started = self._call(
            f"start upload {key}", self._client.create_multipart_upload, Bucket=self.bucket, Key=full,
            ContentType="application/octet-stream", Metadata=metadata,
        )
        upload_id = started["UploadId"]
        try:
            parts = []
            with open(path, "rb") as handle:
                for number, md5 in enumerate(local.part_md5s, start=1):
                    body = handle.read(self.options.part_size)
                    answer = self._call(
                        f"upload part {number} of {key}", self._client.upload_part, Bucket=self.bucket,
                        Key=full, UploadId=upload_id, PartNumber=number, Body=body, ContentMD5=_b64(md5),
                    )
                    parts.append({"PartNumber": number, "ETag": answer["ETag"]})
            self._call(
                f"complete upload {key}", self._client.complete_multipart_upload, Bucket=self.bucket,
                Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts},
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)
            raise

    def _verify(self, key: str, info: ObjectInfo, local: FileDigest) -> None:
        if info.size != local.size:
            raise ChecksumMismatch(f"object {key} has {info.size} bytes, the file {local.size}")
        if info.sha256 is not None and info.sha256 != local.sha256:
            raise ChecksumMismatch(f"object {key} carries sha256 {info.sha256}, not {local.sha256}")
        if info.etag in (local.md5, local.multipart_etag()):
            return
        self.verify(key, local.sha256)

    def verify(self, key: str, sha256: str) -> None:
        verify_by_reading(self, key, sha256)

    def head(self, key: str) -> ObjectInfo | None:
        try:
            answer = self._call(
                f"head {key}", self._client.head_object, Bucket=self.bucket, Key=self._key(key)
            )
        except ObjectNotFound:
            return None
        metadata = {k.lower(): v for k, v in (answer.get("Metadata") or {}).items()}
        return ObjectInfo(
            key, int(answer["ContentLength"]), str(answer.get("ETag", "")).strip('"'), metadata.get("sha256")
        )

    def read(self, key: str, start: int = 0, length: int | None = None) -> Iterator[bytes]:
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if length is not None and length <= 0:
            return iter(())
        if start or length is not None:
            end = "" if length is None else str(start + length - 1)
            kwargs["Range"] = f"bytes={start}-{end}"
        answer = self._call(f"get {key}", self._client.get_object, **kwargs)
        return self._chunks(key, answer["Body"])

    def _chunks(self, key: str, body: Any) -> Iterator[bytes]:
        from botocore.exceptions import BotoCoreError

        try:
            while chunk := body.read(CHUNK_SIZE):
                yield chunk
        except (BotoCoreError, OSError) as exc:
            raise StoreUnavailable(f"reading {key}: {exc}") from exc
        finally:
            body.close()

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self._client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def presign(self, key: str, expires_s: int, filename: str | None = None) -> str | None:
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(key)}
        if filename:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = self._client.generate_presigned_url("get_object", Params=params, ExpiresIn=int(expires_s))
        return url

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (tests and first runs against a fresh server)."""
        try:
            self._call("head bucket", self._client.head_bucket, Bucket=self.bucket)
        except ObjectNotFound:
            self._call("create bucket", self._client.create_bucket, Bucket=self.bucket)

    def close(self) -> None:
        self._client.close()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def open_store(url: str, s3: S3Options | None = None) -> ObjectStore:
    """``file:///folder`` gives a folder store, ``s3://bucket/prefix`` an S3 store."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise ObjectStoreError(f"file:// URL must name a local folder, got {url!r}")
        return FileObjectStore(Path(parts.path))
    if parts.scheme == "s3":
        return S3ObjectStore(parts.netloc, parts.path, s3 or S3Options())
    raise ObjectStoreError(f"object store URL must start with file:// or s3://, got {url!r}")
