"""Recording metadata (RFC 7865) in the three dialects SBCs send, read into one model.

The document comes from the network, so the XML parser never loads a DTD, never expands an
entity and never touches the network or the file system; a document that declares a DOCTYPE is
refused outright.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field, replace
from typing import Literal, TypeVar

from lxml import etree

from srs.errors import MetadataError

RFC7865_NS = "urn:ietf:params:xml:ns:recording:1"
DRAFT_NS = "urn:ietf:params:xml:ns:recording"
BROADWORKS_NS = "urn:ietf:params:xml:ns:siprec"
AUDIOCODES_NS = "http://AudioCodes"
MAX_METADATA_BYTES = 256 * 1024
MAX_DEPTH = 32
MAX_MERGED_EXTENSIONS = 4096
"""Extension values (and, separately, extension elements) a merged snapshot keeps."""

Dialect = Literal["rfc7865", "draft", "broadworks"]
DataMode = Literal["complete", "partial"]
_T = TypeVar("_T")
_DIALECTS: dict[str, Dialect] = {RFC7865_NS: "rfc7865", DRAFT_NS: "draft", BROADWORKS_NS: "broadworks"}
_RECORDING_NAMESPACES = frozenset(_DIALECTS)
_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY|ELEMENT|ATTLIST)", re.IGNORECASE)
_BARE_AMPERSAND = re.compile(rb"&(?!(?:[A-Za-z_][\w.-]*|#[0-9]+|#x[0-9A-Fa-f]+);)")
_BARE_LESS_THAN = re.compile(rb"<(?![A-Za-z_/!?])")


@dataclass(frozen=True, slots=True)
class Participant:
    """A participant; ``send``/``recv`` hold stream LABELS, the ``*_stream_ids`` what the XML said."""

    id: str
    aor: str | None
    name: str | None
    send: tuple[str, ...] = ()
    recv: tuple[str, ...] = ()
    associate_time: str | None = None
    disassociate_time: str | None = None
    session: str | None = None
    send_stream_ids: tuple[str, ...] = ()
    recv_stream_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Stream:
    id: str
    label: str | None
    session: str | None


@dataclass(frozen=True, slots=True)
class Session:
    id: str
    sip_session_ids: tuple[str, ...] = ()
    start_time: str | None = None
    stop_time: str | None = None
    group: str | None = None


@dataclass(frozen=True, slots=True)
class Group:
    id: str
    associate_time: str | None = None
    disassociate_time: str | None = None


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    dialect: Dialect
    datamode: DataMode
    participants: tuple[Participant, ...]
    streams: tuple[Stream, ...]
    sessions: tuple[Session, ...]
    groups: tuple[Group, ...]
    call_recording_id: str | None
    extensions: tuple[tuple[str, str], ...]
    extension_xml: tuple[str, ...]
    warnings: tuple[str, ...]
    raw: bytes

    def extension(self, key: str) -> tuple[str, ...]:
        """Every value recorded under an extension key such as ``apkt:ucid``."""
        return tuple(value for name, value in self.extensions if name == key)

    def participant(self, participant_id: str) -> Participant | None:
        return next((p for p in self.participants if p.id == participant_id), None)

    def stream_for_label(self, label: str) -> Stream | None:
        return next((s for s in self.streams if s.label == label), None)


def parse_metadata(xml: bytes) -> RecordingMetadata:
    """Read an rs-metadata document; MetadataError when it is unsafe or holds no recording element."""
    warnings: list[str] = []
    root = _parse_xml(xml, warnings)
    namespace, local = _split(root.tag)
    dialect = _DIALECTS.get(namespace)
    if dialect is None:
        if local not in ("recording", "recording_metadata"):
            raise MetadataError(f"root element {local!r} is not recording metadata")
        warnings.append(f"unknown metadata namespace {namespace!r}; read as RFC 7865")
        dialect = "rfc7865"
    return _read(_Tree(root, namespace), dialect, xml, warnings)


def merge_metadata(previous: RecordingMetadata | None, update: RecordingMetadata) -> RecordingMetadata:
    """Apply an update (RFC 7865 §6.1): complete replaces the snapshot, partial amends it by id."""
    if previous is None or update.datamode == "complete":
        return update
    participants = {p.id: p for p in previous.participants}
    for new in update.participants:
        old = participants.get(new.id)
        participants[new.id] = new if old is None else _merge_participant(old, new)
    streams = {s.id: s for s in previous.streams}
    for stream in update.streams:
        old_stream = streams.get(stream.id)
        streams[stream.id] = (
            stream
            if old_stream is None
            else Stream(stream.id, stream.label or old_stream.label, stream.session or old_stream.session)
        )
    sessions = {s.id: s for s in previous.sessions}
    for session in update.sessions:
        old_session = sessions.get(session.id)
        sessions[session.id] = session if old_session is None else _merge_session(old_session, session)
    groups = {g.id: g for g in previous.groups}
    for group in update.groups:
        old_group = groups.get(group.id)
        groups[group.id] = (
            group
            if old_group is None
            else Group(
                group.id,
                group.associate_time or old_group.associate_time,
                group.disassociate_time or old_group.disassociate_time,
            )
        )
    labels = {s.id: s.label for s in streams.values()}
    resolved = tuple(_with_labels(p, labels) for p in participants.values())
    warnings = list(update.warnings)
    extensions = _union(previous.extensions, update.extensions, "extension values", warnings)
    fragments = _union(previous.extension_xml, update.extension_xml, "extension elements", warnings)
    return RecordingMetadata(
        dialect=previous.dialect,
        datamode=previous.datamode,
        participants=resolved,
        streams=tuple(streams.values()),
        sessions=tuple(sessions.values()),
        groups=tuple(groups.values()),
        call_recording_id=update.call_recording_id or previous.call_recording_id,
        extensions=extensions,
        extension_xml=fragments,
        warnings=tuple(warnings),
        raw=update.raw,
    )


def _union(old: tuple[_T, ...], new: tuple[_T, ...], what: str, warnings: list[str]) -> tuple[_T, ...]:
    """``old`` plus what ``new`` adds, in linear time and capped: every update of a long call
    may carry extensions, and the snapshot must not grow without bound."""
    seen = set(old)
    merged = old + tuple(item for item in new if item not in seen)
    if len(merged) > MAX_MERGED_EXTENSIONS:
        warnings.append(f"more than {MAX_MERGED_EXTENSIONS} {what} across updates; the newest dropped")
        merged = merged[:MAX_MERGED_EXTENSIONS]
    return merged


def _merge_participant(old: Participant, new: Participant) -> Participant:
    mentions_streams = bool(new.send_stream_ids or new.recv_stream_ids)
    return Participant(
        id=old.id,
        aor=new.aor or old.aor,
        name=new.name or old.name,
        send=new.send if mentions_streams else old.send,
        recv=new.recv if mentions_streams else old.recv,
        associate_time=new.associate_time or old.associate_time,
        disassociate_time=new.disassociate_time or old.disassociate_time,
        session=new.session or old.session,
        send_stream_ids=new.send_stream_ids if mentions_streams else old.send_stream_ids,
        recv_stream_ids=new.recv_stream_ids if mentions_streams else old.recv_stream_ids,
    )


def _merge_session(old: Session, new: Session) -> Session:
    return Session(
        id=old.id,
        sip_session_ids=new.sip_session_ids or old.sip_session_ids,
        start_time=new.start_time or old.start_time,
        stop_time=new.stop_time or old.stop_time,
        group=new.group or old.group,
    )


def _with_labels(participant: Participant, labels: dict[str, str | None]) -> Participant:
    def resolve(ids: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(labels.get(i) or i for i in ids)

    return replace(
        participant, send=resolve(participant.send_stream_ids), recv=resolve(participant.recv_stream_ids)
    )


# -- XML --------------------------------------------------------------------------------------


_PARSERS = threading.local()


def _parser(*, recover: bool) -> etree.XMLParser:
    """One strict parser per thread, made once (a parser costs more to build than a document of
    ours to parse; lxml parsers must not be shared between threads); recovering ones are rare."""
    if not recover:
        parser: etree.XMLParser | None = getattr(_PARSERS, "strict", None)
        if parser is None:
            parser = _PARSERS.strict = _new_parser(recover=False)
        return parser
    return _new_parser(recover=True)


def _new_parser(*, recover: bool) -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=recover,
    )


def _parse_xml(xml: bytes, warnings: list[str]) -> etree._Element:
    if len(xml) > MAX_METADATA_BYTES:
        raise MetadataError(f"metadata of {len(xml)} bytes exceeds the {MAX_METADATA_BYTES} byte limit")
    if _DTD.search(xml):
        raise MetadataError("metadata declares a DTD or entities; refused")
    data = xml.lstrip(b"\xef\xbb\xbf \t\r\n") if xml[:1] in (b" ", b"\t", b"\r", b"\n") else xml
    if data is not xml:
        warnings.append("whitespace before the XML declaration ignored")
    if not data.strip():
        raise MetadataError("metadata body is empty")
    try:
        return _checked_root(etree.fromstring(data, _parser(recover=False)))
    except etree.XMLSyntaxError as error:
        first_error = str(error)
    except (ValueError, UnicodeError) as error:
        raise MetadataError(f"metadata cannot be read: {error}") from None
    escaped = _BARE_LESS_THAN.sub(b"&lt;", _BARE_AMPERSAND.sub(b"&amp;", data))
    try:
        root = _checked_root(etree.fromstring(escaped, _parser(recover=False)))
        warnings.append(f"metadata not well-formed ({first_error}); stray '&' or '<' escaped")
        return root
    except etree.XMLSyntaxError:
        pass
    except (ValueError, UnicodeError) as error:
        raise MetadataError(f"metadata cannot be read: {error}") from None
    try:
        recovered = etree.fromstring(data, _parser(recover=True))
    except (etree.XMLSyntaxError, ValueError, UnicodeError) as error:
        raise MetadataError(f"metadata is not XML: {first_error}; {error}") from None
    if recovered is None:
        raise MetadataError(f"metadata is not XML: {first_error}")
    warnings.append(f"metadata not well-formed ({first_error}); read what the parser could recover")
    return _checked_root(recovered)


def _checked_root(root: etree._Element | None) -> etree._Element:
    if root is None:
        raise MetadataError("metadata has no root element")
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise MetadataError("metadata declares a DTD; refused")
    return root


_SPLIT: dict[str, tuple[str, str]] = {}
_SPLIT_LIMIT = 4096
"""Tags seen before, split: the same few dozen come in every document."""


def _split(tag: object) -> tuple[str, str]:
    if not isinstance(tag, str):
        return "", ""
    known = _SPLIT.get(tag)
    if known is not None:
        return known
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        split = (namespace, local)
    else:
        split = ("", tag)
    if len(_SPLIT) >= _SPLIT_LIMIT:  # a sender inventing tags cannot grow it
        _SPLIT.clear()
    _SPLIT[tag] = split
    return split


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    if not len(element):  # no child elements (comments are removed by the parser): its text is all
        text = element.text
        return (text.strip() or None) if text else None
    value = "".join(element.itertext()).strip()
    return value or None


class _Tree:
    """The document read in one walk: every element's children by lower-case local name, the
    extension elements and the AudioCodes call-recording-id, with the depth limit enforced on the
    way (a walk that stops at the limit, so a deep document costs no more than a shallow one)."""

    def __init__(self, root: etree._Element, namespace: str) -> None:
        self.root = root
        self._kids: dict[etree._Element, dict[str, list[etree._Element]]] = {}
        pairs: list[tuple[str, str]] = []
        fragments: list[str] = []
        call_recording_id: str | None = None
        own = _RECORDING_NAMESPACES | {namespace}
        _, root_local = _split(root.tag)
        # (element, its namespace, its local name, depth, whether its parent is in our namespaces)
        stack: list[tuple[etree._Element, str, str, int, bool]] = [(root, namespace, root_local, 0, True)]
        while stack:
            element, element_ns, local, depth, parent_own = stack.pop()
            if depth >= MAX_DEPTH and len(element):
                raise MetadataError(f"metadata nests deeper than {MAX_DEPTH} elements")
            table: dict[str, list[etree._Element]] = {}
            children: list[tuple[etree._Element, str, str, int, bool]] = []
            is_own = element_ns in own
            for child in element:
                tag = child.tag
                if not isinstance(tag, str):
                    continue
                child_ns, child_local = _split(tag)
                table.setdefault(child_local.lower(), []).append(child)
                children.append((child, child_ns, child_local, depth + 1, is_own))
            self._kids[element] = table
            if depth:
                if call_recording_id is None and element_ns == AUDIOCODES_NS and local == "call-recording-id":
                    call_recording_id = _text(element)
                if not is_own:
                    if parent_own:
                        fragments.append(etree.tostring(element, encoding="unicode", with_tail=False))
                    if not children and (value := _text(element)) is not None:
                        prefix = element.prefix
                        key = f"{element_ns}:{local}" if element_ns else local
                        pairs.append((f"{prefix}:{local}" if prefix else key, value))
            stack.extend(reversed(children))
        self.extensions = tuple(pairs)
        self.extension_xml = tuple(fragments)
        self.call_recording_id = call_recording_id

    def children(self, element: etree._Element, name: str) -> list[etree._Element]:
        """Element children named ``name`` (lower case, any namespace), in document order."""
        return self._kids.get(element, {}).get(name, [])

    def child_text(self, element: etree._Element, name: str) -> str | None:
        for child in self.children(element, name):
            value = _text(child)
            if value is not None:
                return value
        return None

    def stream_refs(self, element: etree._Element, name: str) -> list[str]:
        """``<send>id</send>`` (RFC 7865, draft) or ``<send><id>id</id></send>`` (BroadWorks)."""
        refs: list[str] = []
        for ref in self.children(element, name):
            nested = self.children(ref, "id")
            if nested:
                refs.extend(t for t in (_text(n) for n in nested) if t)
            else:
                value = _text(ref)
                if value:
                    refs.append(value)
        return refs


def _attr(element: etree._Element, *names: str) -> str | None:
    for name in names:
        value = element.get(name)
        if isinstance(value, str):
            return value.strip()
    return None


@dataclass
class _ParticipantDraft:
    """A participant pieced together from <participant> and the association elements."""

    aor: str | None = None
    name: str | None = None
    session: str | None = None
    associate_time: str | None = None
    disassociate_time: str | None = None
    send: list[str] = field(default_factory=list)
    recv: list[str] = field(default_factory=list)

    def absorb(self, tree: _Tree, element: etree._Element) -> None:
        self.associate_time = tree.child_text(element, "associate-time") or self.associate_time
        self.disassociate_time = tree.child_text(element, "disassociate-time") or self.disassociate_time
        self.send.extend(tree.stream_refs(element, "send"))
        self.recv.extend(tree.stream_refs(element, "recv"))


def _read(tree: _Tree, dialect: Dialect, raw: bytes, warnings: list[str]) -> RecordingMetadata:
    """The whole document: datamode, then groups, sessions and streams, then the participants
    (which refer to streams, so a complete document's dangling references become warnings)."""
    root = tree.root
    datamode = _datamode(tree, warnings)
    groups = [
        Group(gid, tree.child_text(g, "associate-time"), tree.child_text(g, "disassociate-time"))
        for g in tree.children(root, "group")
        if (gid := _attr(g, "group_id", "id")) is not None
    ]
    sessions = [
        Session(
            sid,
            tuple(t for t in (_text(s) for s in tree.children(el, "sipsessionid")) if t),
            tree.child_text(el, "start-time"),
            tree.child_text(el, "stop-time"),
            tree.child_text(el, "group-ref") or _attr(el, "group", "group_id"),
        )
        for el in tree.children(root, "session")
        if (sid := _attr(el, "session_id", "id")) is not None
    ]
    streams = [
        Stream(stid, tree.child_text(el, "label"), _attr(el, "session_id", "session"))
        for el in tree.children(root, "stream")
        if (stid := _attr(el, "stream_id", "id")) is not None
    ]
    drafts = _participant_drafts(tree, datamode, warnings)
    participants = _participants(drafts, {s.id: s.label for s in streams}, datamode, warnings)
    return RecordingMetadata(
        dialect=dialect,
        datamode=datamode,
        participants=tuple(participants),
        streams=tuple(streams),
        sessions=tuple(sessions),
        groups=tuple(groups),
        call_recording_id=tree.call_recording_id,
        extensions=tree.extensions,
        extension_xml=tree.extension_xml,
        warnings=tuple(warnings),
        raw=raw,
    )


def _datamode(tree: _Tree, warnings: list[str]) -> DataMode:
    text = (tree.child_text(tree.root, "datamode") or "complete").lower()
    if text not in ("complete", "partial"):
        warnings.append(f"unknown datamode {text!r}; read as complete")
    return "partial" if text == "partial" else "complete"


def _participant_drafts(tree: _Tree, datamode: DataMode, warnings: list[str]) -> dict[str, _ParticipantDraft]:
    """Participants by id, merged from <participant> and both association elements: an id may
    appear in several (RFC 7865 §6.4, and vendors that split them)."""
    root = tree.root
    drafts: dict[str, _ParticipantDraft] = {}
    for element in tree.children(root, "participant"):
        pid = _attr(element, "participant_id", "id")
        if pid is None:
            warnings.append("participant without an id ignored")
            continue
        draft = drafts.setdefault(pid, _ParticipantDraft())
        name_id = next(iter(tree.children(element, "nameid")), None)
        if name_id is not None:
            draft.aor = draft.aor or _attr(name_id, "aor")
            draft.name = draft.name or tree.child_text(name_id, "name")
        draft.aor = draft.aor or tree.child_text(element, "aor")
        draft.name = draft.name or tree.child_text(element, "name")
        draft.session = draft.session or _attr(element, "session", "session_id")
        draft.absorb(tree, element)
    for assoc in tree.children(root, "participantstreamassoc"):
        pid = _attr(assoc, "participant_id", "participant", "id")
        if pid is None:
            warnings.append("participantstreamassoc without participant_id ignored")
            continue
        if pid not in drafts and datamode == "complete":
            warnings.append(f"participantstreamassoc for unknown participant {pid!r} ignored")
            continue
        drafts.setdefault(pid, _ParticipantDraft()).absorb(tree, assoc)
    for assoc in tree.children(root, "participantsessionassoc"):
        pid = _attr(assoc, "participant_id", "participant")
        if pid is None or (pid not in drafts and datamode == "complete"):
            warnings.append(f"participantsessionassoc for unknown participant {pid!r} ignored")
            continue
        draft = drafts.setdefault(pid, _ParticipantDraft())
        draft.session = draft.session or _attr(assoc, "session_id", "session")
        draft.absorb(tree, assoc)
    return drafts


def _participants(
    drafts: dict[str, _ParticipantDraft],
    labels: dict[str, str | None],
    datamode: DataMode,
    warnings: list[str],
) -> list[Participant]:
    """Each draft as a participant, its stream references named by label where the stream has one."""
    participants: list[Participant] = []
    for pid, draft in drafts.items():
        send_ids = tuple(dict.fromkeys(draft.send))
        recv_ids = tuple(dict.fromkeys(draft.recv))
        for ref in send_ids + recv_ids:
            if ref not in labels and datamode == "complete":
                warnings.append(f"participant {pid} refers to unknown stream {ref!r}")
        participants.append(
            Participant(
                id=pid,
                aor=draft.aor,
                name=draft.name,
                send=tuple(labels.get(i) or i for i in send_ids),
                recv=tuple(labels.get(i) or i for i in recv_ids),
                associate_time=draft.associate_time,
                disassociate_time=draft.disassociate_time,
                session=draft.session,
                send_stream_ids=send_ids,
                recv_stream_ids=recv_ids,
            )
        )
    return participants
