"""What every event Rapport publishes has in common, whatever its topic."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from schemas.account_events import EventTime


class RapportEvent(BaseModel):
    """The envelope of Rapport's own output events; each topic's payload extends it."""

    # Consumers of an envelope must accept fields added by later payload versions.
    model_config = ConfigDict(extra="allow", frozen=True)

    schema_version: Annotated[int, Field(ge=1)] = 1
    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    type: Annotated[str, Field(min_length=1, max_length=64)]
    occurred_at: EventTime


RAPPORT_EVENT_ADAPTER: TypeAdapter[RapportEvent] = TypeAdapter(RapportEvent)
