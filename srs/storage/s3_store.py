"""An object store on any S3-compatible service (AWS, MinIO, Ceph RGW, Wasabi, rclone…), through boto3."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from srs.storage.objects import (
    CHUNK_SIZE,
    DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE,
    ChecksumMismatch,
    FileDigest,
    ObjectInfo,
    ObjectNotFound,
    ObjectStoreError,
    StoreUnavailable,
    check_key,
    digest_file,
    verify_by_reading,
)


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
