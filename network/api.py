"""The reading network API: group admins manage it; others read their own part."""

from __future__ import annotations

from typing import Any

import django_filters
from django.db import models, transaction
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer
from rest_framework.views import APIView

from network import selectors, services
from network.models import (
    Facility,
    FacilityPrivilege,
    Jurisdiction,
    Leave,
    License,
    Radiologist,
    ReadingGroup,
    Region,
    Rota,
    Shift,
    Subspecialty,
)
from network.permissions import ReadScopedWriteGroupAdmin, ReferenceDataPermission
from network.serializers import (
    FacilityPrivilegeSerializer,
    FacilitySerializer,
    JurisdictionSerializer,
    LeaveSerializer,
    LicenseSerializer,
    MeSerializer,
    PauseSerializer,
    PauseStateSerializer,
    PrivilegeBulkGrantSerializer,
    PrivilegeCopySerializer,
    PrivilegeGrantResultSerializer,
    RadiologistSerializer,
    ReadingGroupSerializer,
    RegionSerializer,
    RotaSerializer,
    ShiftSerializer,
    SubspecialtySerializer,
)
from teleradiology.api import client_ip, request_actor
from teleradiology.audited import snapshot


class NetworkViewSet(viewsets.ModelViewSet[Any]):
    """CRUD where every write goes through the audited network services."""

    permission_classes = [ReadScopedWriteGroupAdmin]
    # Serializer fields written after the object itself (see save_many).
    related_lists: tuple[str, ...] = ()
    # The services of the app that owns the model (one owner per table): a viewset
    # for another app's model names that app's services.
    save_service = staticmethod(services.network_object_save)
    delete_service = staticmethod(services.network_object_delete)
    set_related_service = staticmethod(services.network_object_set_related)

    def _save(self, serializer: BaseSerializer[Any], **extra: Any) -> models.Model:
        data = {**serializer.validated_data, **extra}
        model = serializer.Meta.model  # type: ignore[attr-defined]
        relations = {f.name for f in model._meta.many_to_many} | set(self.related_lists)
        many = {k: data.pop(k) for k in list(data) if k in relations}
        existing: models.Model | None = serializer.instance
        before = snapshot(existing) if existing is not None else None
        instance: models.Model = existing if existing is not None else model()
        for name, value in data.items():
            setattr(instance, name, value)
        with transaction.atomic():
            self.save_service(
                actor=request_actor(self.request),
                instance=instance,
                before=before,
                ip_address=client_ip(self.request),
            )
            for name, values in many.items():
                self.save_many(instance, name, values)
        serializer.instance = instance
        return instance

    def save_many(self, instance: models.Model, name: str, values: list[Any]) -> None:
        self.set_related_service(
            instance=instance,
            name=name,
            values=values,
            actor=request_actor(self.request),
            ip_address=client_ip(self.request),
        )

    def perform_create(self, serializer: BaseSerializer[Any]) -> None:
        self._save(serializer)

    def perform_update(self, serializer: BaseSerializer[Any]) -> None:
        self._save(serializer)

    def perform_destroy(self, instance: models.Model) -> None:
        self.delete_service(
            actor=request_actor(self.request),
            instance=instance,
            ip_address=client_ip(self.request),
        )


class FacilityFilter(django_filters.FilterSet):
    jurisdiction = django_filters.CharFilter(field_name="jurisdiction__code")
    region = django_filters.CharFilter(field_name="region__code")
    ae_title = django_filters.CharFilter(field_name="ae_titles__ae_title")

    class Meta:
        model = Facility
        fields = ["reading_group", "is_active", "jurisdiction", "region", "ae_title"]


class FacilityViewSet(NetworkViewSet):
    serializer_class = FacilitySerializer
    related_lists = ("ae_titles",)
    filterset_class = FacilityFilter
    ordering_fields = ["name", "created_at"]

    def get_queryset(self) -> models.QuerySet[Facility]:
        return (
            selectors.facility_list_visible(user=self.request.user)
            .select_related("jurisdiction", "region")
            .prefetch_related("ae_titles")
            .order_by("name", "id")
        )

    def save_many(self, instance: models.Model, name: str, values: list[Any]) -> None:
        if name == "ae_titles" and isinstance(instance, Facility):
            services.facility_set_ae_titles(
                actor=request_actor(self.request), facility=instance, ae_titles=values
            )
        else:
            super().save_many(instance, name, values)

    @extend_schema(
        request=PrivilegeCopySerializer,
        responses={
            200: PrivilegeGrantResultSerializer,
            400: OpenApiResponse(
                description="Same facility, another group's facility, or bad dates."
            ),
            403: OpenApiResponse(description="Not an admin of this facility's reading group."),
        },
        summary="Copy another facility's privileges to this one",
        description="Every reader privileged at `from_facility` today (an active privilege "
        "valid today) gets an active privilege here, for `valid_from`/`valid_to` when "
        "given, else for their source privilege's own dates.  Both facilities belong to "
        "a reading group you administer.  Idempotent: an active privilege here that "
        "overlaps or touches the new period is extended to cover it (never duplicated); "
        "one that already covers it is left unchanged.  One transaction; every created "
        "or extended row is audited.",
    )
    @action(detail=True, methods=["post"], url_path="privileges/copy", url_name="privileges-copy")
    def privileges_copy(self, request: Request, pk: Any = None, **kwargs: Any) -> Response:
        target = self.get_object()
        data = PrivilegeCopySerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        result = services.privileges_copy(
            actor=request_actor(request),
            source=data.validated_data["from_facility"],
            target=target,
            on=timezone.localdate(),
            valid_from=data.validated_data.get("valid_from"),
            valid_to=data.validated_data.get("valid_to"),
            ip_address=client_ip(request),
        )
        return Response(PrivilegeGrantResultSerializer(result, context={"request": request}).data)


class RadiologistFilter(django_filters.FilterSet):
    subspecialty = django_filters.CharFilter(field_name="subspecialties__code")
    home_region = django_filters.CharFilter(field_name="home_region__code")

    class Meta:
        model = Radiologist
        fields = ["reading_group", "is_active", "is_available", "subspecialty", "home_region"]


def pause_state(reader: Radiologist) -> dict[str, Any]:
    """A reader's pause now, for PauseStateSerializer (a pause that ran out is over)."""
    now = timezone.now()
    available = selectors.reader_is_available(radiologist=reader, at=now)
    return {
        "radiologist": reader.pk,
        "is_available": available,
        "paused_until": None if available else reader.paused_until,
        "pause_reason": "" if available else reader.pause_reason,
        "max_pause_minutes": reader.reading_group.max_pause_minutes,
    }


def reader_pause_from_request(request: Request, reader: Radiologist) -> Radiologist:
    """Validate a pause request's body and pause ``reader`` (network.services.reader_pause:
    refused with 400 over the group's max_pause_minutes)."""
    data = PauseSerializer(data=request.data)
    data.is_valid(raise_exception=True)
    return services.reader_pause(
        radiologist=reader,
        actor=request_actor(request),
        reason=data.validated_data["reason"],
        minutes=data.validated_data["minutes"],
        ip_address=client_ip(request),
    )


class RadiologistViewSet(NetworkViewSet):
    serializer_class = RadiologistSerializer
    filterset_class = RadiologistFilter
    ordering_fields = ["display_name"]

    def get_queryset(self) -> models.QuerySet[Radiologist]:
        return (
            selectors.radiologist_list_visible(user=self.request.user)
            .select_related("user", "home_region", "reading_group")
            .prefetch_related("subspecialties")
            .order_by("display_name", "id")
        )

    @extend_schema(
        request=PauseSerializer,
        responses={
            200: PauseStateSerializer,
            400: OpenApiResponse(description="No reason, or longer than the group allows."),
            403: OpenApiResponse(description="Not an admin of the reader's reading group."),
        },
        summary="Pause a reader",
        description="The reader is offered no new study and claims none until the pause "
        "ends (by itself at `paused_until`, or by resume); studies already offered to them "
        "stay on their worklist.  At most the group's `max_pause_minutes`.  Audited.",
    )
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, pk: Any = None, **kwargs: Any) -> Response:
        reader = reader_pause_from_request(request, self.get_object())
        return Response(PauseStateSerializer(pause_state(reader)).data)

    @extend_schema(
        request=None,
        responses={
            200: PauseStateSerializer,
            403: OpenApiResponse(description="Not an admin of the reader's reading group."),
        },
        summary="Resume a reader",
        description="End the reader's pause (or unavailability) now; audited.  A reader "
        "who is not paused is left as they are.",
    )
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: Any = None, **kwargs: Any) -> Response:
        reader = services.reader_resume(
            radiologist=self.get_object(),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return Response(PauseStateSerializer(pause_state(reader)).data)


class LicenseFilter(django_filters.FilterSet):
    jurisdiction = django_filters.CharFilter(field_name="jurisdiction__code")
    valid_on = django_filters.DateFilter(method="filter_valid_on")

    class Meta:
        model = License
        fields = ["radiologist", "jurisdiction", "status", "scope"]

    def filter_valid_on(self, queryset: Any, name: str, value: Any) -> Any:
        return queryset.filter(valid_from__lte=value, valid_to__gte=value)


class LicenseViewSet(NetworkViewSet):
    serializer_class = LicenseSerializer
    filterset_class = LicenseFilter
    ordering_fields = ["valid_to", "valid_from"]

    def get_queryset(self) -> models.QuerySet[License]:
        return selectors.license_list_visible(user=self.request.user).order_by("id")


class FacilityPrivilegeViewSet(NetworkViewSet):
    serializer_class = FacilityPrivilegeSerializer
    filterset_fields = ["radiologist", "facility", "status"]
    ordering_fields = ["valid_to", "valid_from"]

    def get_queryset(self) -> models.QuerySet[FacilityPrivilege]:
        return selectors.privilege_list_visible(user=self.request.user).order_by("id")

    @extend_schema(
        request=PrivilegeBulkGrantSerializer,
        responses={
            200: PrivilegeGrantResultSerializer,
            400: OpenApiResponse(
                description="Bad dates, a facility you do not administer, or readers not "
                "of the facility's reading group (named by id)."
            ),
            403: OpenApiResponse(description="Not a group admin."),
        },
        summary="Grant privileges at one facility to many readers",
        description="Every reader listed gets an active privilege at `facility` from "
        "`valid_from` to `valid_to`.  Idempotent: an active privilege of the reader there "
        "that overlaps or touches the period is extended to cover it (the one ending "
        "last, when several), never duplicated; one that already covers it is left "
        "unchanged; suspended, revoked or pending rows are left as they are.  All or "
        "nothing, in one transaction; every created or extended row is audited as the "
        "single-row API audits it.",
    )
    @action(detail=False, methods=["post"], url_path="bulk-grant", url_name="bulk-grant")
    def bulk_grant(self, request: Request) -> Response:
        data = PrivilegeBulkGrantSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        result = services.privileges_grant(
            actor=request_actor(request),
            facility=data.validated_data["facility"],
            radiologist_ids=data.validated_data["radiologists"],
            valid_from=data.validated_data["valid_from"],
            valid_to=data.validated_data["valid_to"],
            ip_address=client_ip(request),
        )
        return Response(
            PrivilegeGrantResultSerializer(result, context={"request": request}).data,
            status=status.HTTP_200_OK,
        )


class ShiftFilter(django_filters.FilterSet):
    on_duty_at = django_filters.IsoDateTimeFilter(method="filter_on_duty_at")
    generated = django_filters.BooleanFilter(
        field_name="rota", lookup_expr="isnull", exclude=True, label="Generated from a rota"
    )

    class Meta:
        model = Shift
        fields = ["radiologist", "rota"]

    def filter_on_duty_at(self, queryset: Any, name: str, value: Any) -> Any:
        return queryset.filter(starts_at__lte=value, ends_at__gt=value)


class ShiftViewSet(NetworkViewSet):
    serializer_class = ShiftSerializer
    filterset_class = ShiftFilter
    ordering_fields = ["starts_at"]

    def get_queryset(self) -> models.QuerySet[Shift]:
        return selectors.shift_list_visible(user=self.request.user).order_by("starts_at", "id")


class RotaViewSet(NetworkViewSet):
    """Readers' weekly rotas: saving or deleting one regenerates the reader's future
    shifts at once (network.services.rota_save / rota_delete)."""

    serializer_class = RotaSerializer
    filterset_fields = ["radiologist", "weekday"]
    ordering_fields = ["weekday", "starts_at", "valid_from"]
    # Typed for its own model (the base's are generic over any network object).
    save_service = staticmethod(services.rota_save)  # type: ignore[assignment]
    delete_service = staticmethod(services.rota_delete)  # type: ignore[assignment]

    def get_queryset(self) -> models.QuerySet[Rota]:
        return selectors.rota_list_visible(user=self.request.user).order_by(
            "radiologist_id", "weekday", "starts_at", "id"
        )


class LeaveFilter(django_filters.FilterSet):
    on = django_filters.DateFilter(method="filter_on", label="Away on this day")

    class Meta:
        model = Leave
        fields = ["radiologist"]

    def filter_on(self, queryset: Any, name: str, value: Any) -> Any:
        return queryset.filter(starts_on__lte=value, ends_on__gte=value)


class LeaveViewSet(NetworkViewSet):
    """Readers' leave: no rota shift is generated on its days, and generated shifts
    not started that fall in it are removed (network.services.leave_save)."""

    serializer_class = LeaveSerializer
    filterset_class = LeaveFilter
    ordering_fields = ["starts_on"]
    # Typed for its own model (the base's are generic over any network object).
    save_service = staticmethod(services.leave_save)  # type: ignore[assignment]
    delete_service = staticmethod(services.leave_delete)  # type: ignore[assignment]

    def get_queryset(self) -> models.QuerySet[Leave]:
        return selectors.leave_list_visible(user=self.request.user).order_by(
            "radiologist_id", "starts_on", "id"
        )


class ReferenceViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet[Any]
):
    permission_classes = [ReferenceDataPermission]


class JurisdictionViewSet(ReferenceViewSet):
    queryset = Jurisdiction.objects.order_by("code")
    serializer_class = JurisdictionSerializer
    filterset_fields = ["country"]


class RegionViewSet(ReferenceViewSet):
    queryset = Region.objects.order_by("code")
    serializer_class = RegionSerializer
    filterset_fields = ["country"]


class SubspecialtyViewSet(ReferenceViewSet):
    queryset = Subspecialty.objects.order_by("code")
    serializer_class = SubspecialtySerializer


class ReadingGroupApi(APIView):
    """Read or change one reading group's settings (its admins only): the worklist's
    aging step (a new step re-keys the group's worklists at once) and the longest
    pause a reader may take."""

    permission_classes = [IsAuthenticated]

    def _group(self, request: Request, reading_group_id: int) -> ReadingGroup:
        # Another group's id answers as a missing one: no oracle of other groups.
        group = (
            selectors.reading_groups_administered(user=request.user)
            .filter(pk=reading_group_id)
            .first()
        )
        if group is None:
            raise NotFound("No reading group of yours has this id.")
        return group

    @extend_schema(responses=ReadingGroupSerializer)
    def get(self, request: Request, reading_group_id: int) -> Response:
        return Response(ReadingGroupSerializer(self._group(request, reading_group_id)).data)

    @extend_schema(request=ReadingGroupSerializer, responses=ReadingGroupSerializer)
    def patch(self, request: Request, reading_group_id: int) -> Response:
        group = self._group(request, reading_group_id)
        body = ReadingGroupSerializer(group, data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        before = snapshot(group)
        for name, value in body.validated_data.items():
            setattr(group, name, value)
        services.network_object_save(
            actor=request_actor(request),
            instance=group,
            before=before,
            ip_address=client_ip(request),
        )
        return Response(ReadingGroupSerializer(group).data)


class MeApi(APIView):
    """Who am I: my roles and what I am granted."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses=MeSerializer)
    def get(self, request: Request) -> Response:
        user = request.user
        reader = selectors.radiologist_for_user(user=user)
        data = {
            "username": user.get_username(),
            "roles": selectors.user_roles(user=user),
            "radiologist_id": reader.pk if reader else None,
            "presence": (
                selectors.reader_presence(radiologist=reader, at=timezone.now()) if reader else None
            ),
            "max_pause_minutes": reader.reading_group.max_pause_minutes if reader else None,
            "facilities": list(
                selectors.facilities_staffed(user=user).values_list("pk", flat=True)
            ),
            "reading_groups": list(
                selectors.reading_groups_administered(user=user).values_list("pk", flat=True)
            ),
        }
        return Response(MeSerializer(data).data)


def _own_reader(request: Request) -> Radiologist:
    reader = selectors.radiologist_for_user(user=request.user)
    if reader is None:
        raise PermissionDenied("Only readers pause themselves.")
    return reader


class MePauseApi(APIView):
    """Pause myself (a reader): no new study is offered to me and I claim none until
    the pause ends, by itself or when I resume; what is on my worklist stays there."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=PauseSerializer,
        responses={
            200: PauseStateSerializer,
            400: OpenApiResponse(description="No reason, or longer than your group allows."),
            403: OpenApiResponse(description="Not a reader."),
        },
        summary="Pause myself",
    )
    def post(self, request: Request) -> Response:
        reader = reader_pause_from_request(request, _own_reader(request))
        return Response(PauseStateSerializer(pause_state(reader)).data)


class MeResumeApi(APIView):
    """End my pause now."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        request=None,
        responses={
            200: PauseStateSerializer,
            403: OpenApiResponse(description="Not a reader."),
        },
        summary="Resume after a pause",
    )
    def post(self, request: Request) -> Response:
        reader = services.reader_resume(
            radiologist=_own_reader(request),
            actor=request_actor(request),
            ip_address=client_ip(request),
        )
        return Response(PauseStateSerializer(pause_state(reader)).data)
