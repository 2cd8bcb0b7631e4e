"""Examples of ``/work/shared/docs/steam-api.md`` as the tests' expectations, written from the doc
and never built by a fake."""

from __future__ import annotations

import json
from typing import Any

# "Discount end dates", the discounted game: one GetItems store item, byte for byte.
_BLUE_FIRE = json.loads(
    '{"item_type":0,"id":1220150,"success":1,"visible":true,"name":"Blue Fire",'
    '"store_url_path":"app/1220150/Blue_Fire","appid":1220150,"type":0,'
    '"best_purchase_option":{"packageid":422570,"purchase_option_name":"Blue Fire",'
    '"final_price_in_cents":"499","original_price_in_cents":"1999",'
    '"formatted_final_price":"$4.99","formatted_original_price":"$19.99","discount_pct":75,'
    '"active_discounts":[{"discount_amount":"1500",'
    '"discount_description":"#discount_desc_preset_special","discount_end_date":1734544800}],'
    '"user_can_purchase_as_gift":true}}'
)


def blue_fire_item(package_id: int = 422570) -> dict[str, Any]:
    """A fresh copy of the doc's discounted game, its package id ``package_id``."""
    item: dict[str, Any] = json.loads(json.dumps(_BLUE_FIRE))
    item["best_purchase_option"]["packageid"] = package_id
    return item
