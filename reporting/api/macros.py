"""The reporting API's macros: a radiologist's own named snippets."""

from __future__ import annotations

from django.db import models
from rest_framework import mixins, serializers, viewsets
from rest_framework.permissions import IsAuthenticated

from reporting import selectors
from reporting.api._common import _reader
from reporting.limits import MACRO_TEXT_MAX
from reporting.models import Macro
from reporting.services.macros import macro_delete, macro_save
from teleradiology.api import request_actor


class MacroSerializer(serializers.ModelSerializer[Macro]):
    class Meta:
        model = Macro
        fields = ["id", "name", "text", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"text": {"max_length": MACRO_TEXT_MAX}}


class MacroViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet[Macro],
):
    """My named snippets, insertable into any text field of a report."""

    serializer_class = MacroSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> models.QuerySet[Macro]:
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Macro.objects.none()
        return selectors.macro_list_for(radiologist=_reader(self.request))

    def perform_create(self, serializer: serializers.BaseSerializer[Macro]) -> None:
        serializer.instance = macro_save(
            radiologist=_reader(self.request),
            name=serializer.validated_data["name"],
            text=serializer.validated_data["text"],
            actor=request_actor(self.request),
        )

    def perform_update(self, serializer: serializers.BaseSerializer[Macro]) -> None:
        instance = serializer.instance
        assert instance is not None  # noqa: S101 - set by get_object
        serializer.instance = macro_save(
            radiologist=_reader(self.request),
            macro_id=instance.pk,
            name=serializer.validated_data.get("name", instance.name),
            text=serializer.validated_data.get("text", instance.text),
            actor=request_actor(self.request),
        )

    def perform_destroy(self, instance: Macro) -> None:
        macro_delete(
            radiologist=_reader(self.request),
            macro_id=instance.pk,
            actor=request_actor(self.request),
        )
