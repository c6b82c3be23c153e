"""DICOMweb (PS3.18) over the stored studies, at ``/dicomweb/``: QIDO-RS searches,
WADO-RS retrieval (instances, metadata, frames, bulk data, rendered images) and
STOW-RS uploads.  Token or session authentication; a study outside the caller's
reach answers 404 like an unknown one; each request is audited once."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import status as http
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from dicomweb import media, pixels, selectors, services
from dicomweb.query import BadQuery, Level, parse_query
from ingest.storage import default_storage
from network.selectors import facilities_staffed
from studies.validators import is_valid_uid
from teleradiology.api import client_ip
from teleradiology.queue import enqueue


class DicomWebError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _uid(value: str, what: str) -> str:
    if not is_valid_uid(value):
        raise DicomWebError(http.HTTP_400_BAD_REQUEST, f"{what} {value[:80]!r} is not a valid UID")
    return value


def _base(request: Request) -> str:
    return request.build_absolute_uri("/dicomweb").rstrip("/")


def _accept(request: Request) -> list[media.MediaRange]:
    header = request.META.get("HTTP_ACCEPT", "")
    accepted = media.parse_accept(header)
    # Query-parameter form of Accept (PS3.18 8.3.3.1), as browsers cannot set headers.
    extra = request.query_params.get("accept")
    if extra:
        accepted = media.parse_accept(extra) + accepted
    return accepted


def _no_store(response: HttpResponseBase) -> HttpResponseBase:
    response["Cache-Control"] = "no-store"
    return response


@extend_schema(exclude=True)
class DicomWebView(APIView):
    """Errors in DICOMweb's own words; content is negotiated by each view."""

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The views choose their own media types (multipart, dicom+json, images);
        # errors are rendered as JSON whatever was asked.
        return JSONRenderer(), "application/json"

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, DicomWebError):
            return Response({"detail": exc.message}, status=exc.status)
        if isinstance(exc, BadQuery):
            return Response({"detail": str(exc)}, status=http.HTTP_400_BAD_REQUEST)
        if isinstance(exc, media.NotAcceptable):
            return Response({"detail": str(exc)}, status=http.HTTP_406_NOT_ACCEPTABLE)
        if isinstance(exc, media.BadBody):
            return Response({"detail": str(exc)}, status=http.HTTP_400_BAD_REQUEST)
        if isinstance(exc, pixels.NoSuchFrame):
            return Response({"detail": str(exc)}, status=http.HTTP_404_NOT_FOUND)
        if isinstance(exc, pixels.CannotDecode):
            return Response({"detail": str(exc)}, status=http.HTTP_406_NOT_ACCEPTABLE)
        return super().handle_exception(exc)

    def target(
        self, study: str, series: str | None = None, sop: str | None = None
    ) -> selectors.Target:
        _uid(study, "StudyInstanceUID")
        if series is not None:
            _uid(series, "SeriesInstanceUID")
        if sop is not None:
            _uid(sop, "SOPInstanceUID")
        found = selectors.target_get(
            user=self.request.user, study_uid=study, series_uid=series, sop_uid=sop
        )
        if found is None:
            raise DicomWebError(http.HTTP_404_NOT_FOUND, "No such study, series or instance.")
        return found


# -- QIDO-RS ------------------------------------------------------------------


def _search_response(
    request: Request, level: str, params: list[tuple[str, str]], query: Any, page: selectors.Page
) -> HttpResponseBase:
    """The search's answer, audited: the query and the studies it returned."""
    media.choose_json(_accept(request))
    services.search_record(
        user=request.user,
        level=level,
        params=params,
        studies=page.patient_ids,
        ip_address=client_ip(request),
    )
    body = json.dumps(page.results, separators=(",", ":"), ensure_ascii=False)
    response = HttpResponse(body.encode(), content_type="application/dicom+json")
    warnings = []
    ignored = selectors.ignored_names(query)
    if ignored:
        warnings.append(
            f'299 telerad "The following attributes are not supported for matching and were '
            f'ignored: {", ".join(ignored)}"'
        )
    if page.more:
        warnings.append('299 telerad "There are more results: ask again with offset"')
    if warnings:
        response["Warning"] = ", ".join(warnings)
    return _no_store(response)


def _params(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, values in request.query_params.lists() for v in values if k != "accept"]


class StudiesView(DicomWebView):
    """GET: QIDO-RS search for studies.  POST: STOW-RS."""

    def get(self, request: Request) -> HttpResponseBase:
        params = _params(request)
        query = parse_query(params, level=Level.STUDY)
        page = selectors.studies_search(user=request.user, query=query, base=_base(request))
        return _search_response(request, "studies", params, query, page)

    def post(self, request: Request) -> HttpResponseBase:
        return _stow(request, None)


class SeriesSearchView(DicomWebView):
    def get(self, request: Request, study: str | None = None) -> HttpResponseBase:
        if study is not None:
            _uid(study, "StudyInstanceUID")
        params = _params(request)
        query = parse_query(params, level=Level.SERIES)
        page = selectors.series_search(
            user=request.user, query=query, base=_base(request), study_uid=study
        )
        if page is None:
            raise DicomWebError(http.HTTP_404_NOT_FOUND, "No such study.")
        return _search_response(request, "series", params, query, page)


class InstancesSearchView(DicomWebView):
    def get(
        self, request: Request, study: str | None = None, series: str | None = None
    ) -> HttpResponseBase:
        if study is not None:
            _uid(study, "StudyInstanceUID")
        if series is not None:
            _uid(series, "SeriesInstanceUID")
        params = _params(request)
        query = parse_query(params, level=Level.INSTANCE)
        page = selectors.instances_search(
            user=request.user,
            query=query,
            base=_base(request),
            study_uid=study,
            series_uid=series,
        )
        if page is None:
            raise DicomWebError(http.HTTP_404_NOT_FOUND, "No such study or series.")
        return _search_response(request, "instances", params, query, page)


# -- WADO-RS: instances ---------------------------------------------------------


def _instance_parts(
    instances: list[selectors.Stored], base: str, study_uid: str, transfer_syntax: str
) -> Iterator[media.Part]:
    storage = default_storage()
    for instance in instances:
        location = (
            f"{base}/studies/{study_uid}/series/{instance.series_instance_uid}"
            f"/instances/{instance.sop_instance_uid}"
        )
        if transfer_syntax in ("", media.ANY_TRANSFER_SYNTAX) or (
            instance.transfer_syntax_uid == transfer_syntax
        ):
            chunks: Iterable[bytes] = media.file_chunks(storage.open(instance.storage_key))
            syntax = instance.transfer_syntax_uid
        else:
            chunks = [pixels.explicit_little_endian(storage.path(instance.storage_key))]
            syntax = transfer_syntax
        yield media.Part(
            f"application/dicom; transfer-syntax={syntax}" if syntax else "application/dicom",
            chunks,
            location,
        )


class RetrieveView(DicomWebView):
    """WADO-RS retrieve study, series or instance: the stored objects, streamed."""

    def get(
        self, request: Request, study: str, series: str | None = None, sop: str | None = None
    ) -> HttpResponseBase:
        target = self.target(study, series, sop)
        syntaxes = {i.transfer_syntax_uid for i in target.instances}
        choice = media.choose_dicom(_accept(request), stored_syntaxes=syntaxes)
        boundary = media.new_boundary()
        services.retrieval_record(
            user=request.user,
            study=target.study,
            what="retrieve",
            detail=_scope(series, sop, len(target.instances)),
            ip_address=client_ip(request),
        )
        response = StreamingHttpResponse(
            media.multipart_stream(
                _instance_parts(target.instances, _base(request), study, choice.transfer_syntax),
                boundary,
            ),
            content_type=media.multipart_content_type(
                "application/dicom", boundary, choice.transfer_syntax
            ),
        )
        return _no_store(response)

    def post(
        self, request: Request, study: str, series: str | None = None, sop: str | None = None
    ) -> HttpResponseBase:
        # STOW-RS stores into a study; the series and instance paths only retrieve.
        if series is not None or sop is not None:
            raise DicomWebError(
                http.HTTP_405_METHOD_NOT_ALLOWED, "Objects are stored to a study, not a series."
            )
        return _stow(request, _uid(study, "StudyInstanceUID"))


def _scope(series: str | None, sop: str | None, count: int) -> dict[str, Any]:
    detail: dict[str, Any] = {"instances": count}
    if series:
        detail["series"] = series
    if sop:
        detail["instance"] = sop
    return detail


class MetadataView(DicomWebView):
    """WADO-RS metadata: each instance's stored DICOM JSON, gzip-compressed when the
    client accepts it, streamed."""

    def get(
        self, request: Request, study: str, series: str | None = None, sop: str | None = None
    ) -> HttpResponseBase:
        target = self.target(study, series, sop)
        media.choose_json(_accept(request))
        services.retrieval_record(
            user=request.user,
            study=target.study,
            what="metadata",
            detail=_scope(series, sop, len(target.instances)),
            ip_address=client_ip(request),
        )
        if selectors.missing_json_studies(study_ids=[target.study.pk]):
            enqueue("ingest.studies_dicom_json_build", [target.study.pk])
        pieces = (
            piece.encode()
            for piece in selectors.metadata_chunks(target=target, base=_base(request))
        )
        gzip = "gzip" in request.META.get("HTTP_ACCEPT_ENCODING", "")
        response = StreamingHttpResponse(
            _gzip(pieces) if gzip else pieces, content_type="application/dicom+json"
        )
        if gzip:
            response["Content-Encoding"] = "gzip"
        response["Vary"] = "Accept-Encoding"
        return _no_store(response)


def _gzip(pieces: Iterable[bytes]) -> Iterator[bytes]:
    # Level 3: most of level 6's ratio on DICOM JSON (repetitive) at about half its cost.
    compressor = zlib.compressobj(3, zlib.DEFLATED, 31)
    for piece in pieces:
        out = compressor.compress(piece)
        if out:
            yield out
    yield compressor.flush()


# -- WADO-RS: pixels -------------------------------------------------------------


def _frame_numbers(text: str) -> list[int]:
    numbers = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit() or len(part) > 9 or int(part) < 1:
            raise DicomWebError(
                http.HTTP_400_BAD_REQUEST,
                f"{text[:80]!r} is not a list of frame numbers (1, 2 ...)",
            )
        numbers.append(int(part))
    if len(numbers) > 10000:
        raise DicomWebError(http.HTTP_400_BAD_REQUEST, "at most 10000 frames per request")
    return numbers


def _source(instance: selectors.Stored) -> pixels.PixelSource:
    return pixels.pixel_source(default_storage().path(instance.storage_key))


def _pixel_response(
    request: Request,
    source: pixels.PixelSource,
    chunks: Callable[[bool], Iterable[bytes]],
    location: str,
) -> HttpResponseBase:
    choice = media.choose_frames(
        _accept(request), stored_syntax=source.transfer_syntax, compressed=source.compressed
    )
    native = choice.transfer_syntax != source.transfer_syntax or not source.compressed
    native = native and choice.transfer_syntax == media.EXPLICIT_VR_LITTLE_ENDIAN
    part_type = (
        f"{choice.media_type}; transfer-syntax={choice.transfer_syntax}"
        if choice.media_type == "application/octet-stream"
        else choice.media_type
    )
    if not choice.multipart:
        response: HttpResponseBase = StreamingHttpResponse(chunks(native), content_type=part_type)
        return _no_store(response)
    boundary = media.new_boundary()
    parts = (media.Part(part_type, [chunk], location) for chunk in chunks(native))
    response = StreamingHttpResponse(
        media.multipart_stream(parts, boundary),
        content_type=media.multipart_content_type(
            choice.media_type, boundary, choice.transfer_syntax
        ),
    )
    return _no_store(response)


class FramesView(DicomWebView):
    def get(
        self, request: Request, study: str, series: str, sop: str, frames: str
    ) -> HttpResponseBase:
        numbers = _frame_numbers(frames)
        target = self.target(study, series, sop)
        instance = target.instances[0]
        source = _source(instance)
        for number in numbers:
            if number > source.frames:
                raise pixels.NoSuchFrame(f"frame {number} is outside 1..{source.frames}")
        services.retrieval_record(
            user=request.user,
            study=target.study,
            what="frames",
            detail={"series": series},
            ip_address=client_ip(request),
            per_frame=True,
        )
        location = f"{_base(request)}/studies/{study}/series/{series}/instances/{sop}/frames/"

        def chunks(native: bool) -> Iterator[bytes]:
            return pixels.frames_stream(source, numbers, native=native)

        return _pixel_response(request, source, chunks, location + frames)


class BulkDataView(DicomWebView):
    def get(
        self, request: Request, study: str, series: str, sop: str, tag: str
    ) -> HttpResponseBase:
        if len(tag) != 8 or any(c not in "0123456789abcdefABCDEF" for c in tag):
            raise DicomWebError(http.HTTP_400_BAD_REQUEST, f"{tag[:20]!r} is not a tag")
        target = self.target(study, series, sop)
        instance = target.instances[0]
        services.retrieval_record(
            user=request.user,
            study=target.study,
            what="bulk data",
            detail={"series": series},
            ip_address=client_ip(request),
            per_frame=True,
        )
        location = request.build_absolute_uri(request.path)
        path = default_storage().path(instance.storage_key)
        if int(tag, 16) == pixels.PIXEL_DATA:
            source = pixels.pixel_source(path)
            numbers = list(range(1, source.frames + 1))

            def frames(native: bool) -> Iterator[bytes]:
                return pixels.frames_stream(source, numbers, native=native)

            return _pixel_response(request, source, frames, location)
        value = pixels.bulk_value(path, int(tag, 16))
        if value is None:
            raise DicomWebError(http.HTTP_404_NOT_FOUND, f"the instance has no bulk data {tag}")
        choice = media.choose_frames(_accept(request), stored_syntax="", compressed=False)
        boundary = media.new_boundary()
        if not choice.multipart:
            return _no_store(HttpResponse(value, content_type="application/octet-stream"))
        body = b"".join(
            media.multipart_stream(
                [media.Part("application/octet-stream", [value], location)], boundary
            )
        )
        return _no_store(
            HttpResponse(
                body,
                content_type=media.multipart_content_type("application/octet-stream", boundary),
            )
        )


def _rendering(request: Request, media_type: str, *, thumbnail: bool) -> pixels.Rendering:
    window = None
    raw = request.query_params.get("window")
    if raw:
        parts = raw.split(",")
        try:
            centre, width = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise DicomWebError(
                http.HTTP_400_BAD_REQUEST, "window is centre,width[,function], e.g. 40,400"
            ) from None
        if width <= 0:
            raise DicomWebError(http.HTTP_400_BAD_REQUEST, "the window width must be positive")
        window = (centre, width)
    viewport = (128, 128) if thumbnail else None
    raw = request.query_params.get("viewport")
    if raw:
        parts = raw.split(",")
        if len(parts) < 2 or not all(
            p.strip().isascii() and p.strip().isdigit() for p in parts[:2]
        ):
            raise DicomWebError(http.HTTP_400_BAD_REQUEST, "viewport is width,height in pixels")
        width_px, height_px = int(parts[0]), int(parts[1])
        if not (1 <= width_px <= 4096 and 1 <= height_px <= 4096):
            raise DicomWebError(http.HTTP_400_BAD_REQUEST, "viewport sides are 1..4096 pixels")
        viewport = (height_px, width_px)
    quality = 85
    raw = request.query_params.get("quality")
    if raw:
        if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 100:
            raise DicomWebError(http.HTTP_400_BAD_REQUEST, "quality is 1..100")
        quality = int(raw)
    return pixels.Rendering(media_type, window, viewport, quality)


class RenderedView(DicomWebView):
    """Rendered instance or frame, and thumbnails of a study, series or instance."""

    thumbnail = False

    def get(
        self,
        request: Request,
        study: str,
        series: str | None = None,
        sop: str | None = None,
        frame: str | None = None,
    ) -> HttpResponseBase:
        media_type = media.choose_rendered(_accept(request))
        number = _frame_numbers(frame)[0] if frame else 1
        target = self.target(study, series, sop)
        instance = _representative(target.instances) if sop is None else target.instances[0]
        if instance is None:
            raise DicomWebError(http.HTTP_404_NOT_FOUND, "the study has no images")
        rendering = _rendering(request, media_type, thumbnail=self.thumbnail)
        services.retrieval_record(
            user=request.user,
            study=target.study,
            what="thumbnail" if self.thumbnail else "rendered",
            detail={"series": instance.series_instance_uid},
            ip_address=client_ip(request),
            per_frame=True,
        )
        source = _source(instance)
        if number > source.frames:
            raise pixels.NoSuchFrame(f"frame {number} is outside 1..{source.frames}")
        if sop is None and source.frames > 1:
            number = (source.frames + 1) // 2
        body = pixels.render(source, number, rendering)
        response = HttpResponse(body, content_type=media_type)
        # A picture of patient data: private to this user, kept briefly.
        response["Cache-Control"] = "private, max-age=300"
        return response


def _representative(instances: list[selectors.Stored]) -> selectors.Stored | None:
    """The middle image of the first series that has images (a series' thumbnail)."""
    images = [i for i in instances if not i.sop_class_uid.startswith("1.2.840.10008.5.1.4.1.1.88")]
    if not images:
        return None
    first_series = images[0].series_id
    series = [i for i in images if i.series_id == first_series]
    return series[len(series) // 2]


class ThumbnailView(RenderedView):
    thumbnail = True


# -- STOW-RS ------------------------------------------------------------------


def _stow(request: Request, study: str | None) -> HttpResponseBase:
    content_type = media.parse_content_type(request.META.get("CONTENT_TYPE"))
    inner = content_type.params.get("type", "").lower()
    if content_type.media_type != "multipart/related" or inner not in ("application/dicom", ""):
        raise DicomWebError(
            http.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            'STOW-RS accepts multipart/related; type="application/dicom" bodies',
        )
    limit = settings.DICOMWEB_STOW_MAX_BYTES
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit:
        raise DicomWebError(
            http.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"the body is {length} bytes; at most {limit} per request",
        )
    facility = _uploader_facility(request)
    try:
        result = services.stow_receive(
            storage=default_storage(),
            facility=facility,
            body=media.CappedStream(_body_stream(request, length), limit),
            boundary=content_type.params.get("boundary", ""),
            peer_address=client_ip(request),
            expected_study_uid=study,
        )
    except media.BodyTooLarge:
        raise DicomWebError(
            http.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"the body is larger than {limit} bytes (the parts before the limit were filed; "
            "send the rest in another request)",
        ) from None
    body = _stow_response(result, _base(request))
    code = (
        http.HTTP_200_OK
        if not result.failed
        else http.HTTP_202_ACCEPTED
        if result.stored
        else http.HTTP_409_CONFLICT
    )
    return HttpResponse(
        json.dumps(body, separators=(",", ":")).encode(),
        status=code,
        content_type="application/dicom+json",
    )


def _body_stream(request: Request, length: int) -> Any:
    """The request body as a stream read part by part: Django's (limited to the
    Content-Length), or, for a chunked upload without one, the server's own input
    when the server says it ends it (gunicorn sets ``wsgi.input_terminated``)."""
    if not length and request.META.get("wsgi.input_terminated"):
        return request.META["wsgi.input"]
    return request._request


def _uploader_facility(request: Request) -> Any:
    """The facility the upload is for: the signed-in facility account's (``facility``
    names one if the account staffs several)."""
    staffed = list(facilities_staffed(user=request.user))
    if not staffed:
        raise DicomWebError(
            http.HTTP_403_FORBIDDEN, "only a facility's staff account may store studies"
        )
    wanted = request.query_params.get("facility")
    if wanted is None:
        if len(staffed) > 1:
            raise DicomWebError(
                http.HTTP_400_BAD_REQUEST,
                "the account staffs several facilities: name one with ?facility=<id>",
            )
        return staffed[0]
    for facility in staffed:
        if str(facility.pk) == wanted:
            return facility
    raise DicomWebError(http.HTTP_403_FORBIDDEN, "the account does not staff that facility")


def _stow_response(result: services.StowResult, base: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if len(result.study_uids) == 1:
        body["00081190"] = {
            "vr": "UR",
            "Value": [f"{base}/studies/{next(iter(result.study_uids))}"],
        }
    if result.stored:
        body["00081199"] = {
            "vr": "SQ",
            "Value": [
                {
                    "00081150": {"vr": "UI", "Value": [sop_class]},
                    "00081155": {"vr": "UI", "Value": [sop]},
                    **({"00081190": {"vr": "UR", "Value": [base + path]}} if path else {}),
                    **(
                        {"00081196": {"vr": "US", "Value": [0xB000]}}
                        if outcome == "version"
                        else {}
                    ),
                }
                for sop_class, sop, outcome, path in result.stored
            ],
        }
    if result.failed:
        body["00081198"] = {
            "vr": "SQ",
            "Value": [
                {
                    **({"00081150": {"vr": "UI", "Value": [sop_class]}} if sop_class else {}),
                    **({"00081155": {"vr": "UI", "Value": [sop]}} if sop else {}),
                    "00081197": {"vr": "US", "Value": [code]},
                    # The reason in words, in the Error Comment a DIMSE response
                    # would carry (Failure Reason alone is a bare code).
                    "00000902": {"vr": "LO", "Value": [reason[:64]]},
                }
                for sop_class, sop, code, reason in result.failed
            ],
        }
    return body
