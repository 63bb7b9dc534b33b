"""Paging a SQLAlchemy select for flask-smorest's ``paginate`` (X-Pagination header)."""

from __future__ import annotations

from flask_smorest import Page
from sqlalchemy import func, select

from his.context import db_session


class SelectPage(Page):
    """Counts with one query and fetches one page with another."""

    @property
    def items(self):
        stmt = self.collection.offset(self.page_params.first_item).limit(self.page_params.page_size)
        return list(db_session().scalars(stmt))

    @property
    def item_count(self) -> int:
        counted = select(func.count()).select_from(self.collection.order_by(None).subquery())
        return db_session().scalar(counted) or 0


def open_ended(page_params, has_more: bool) -> None:
    """A page whose total is not counted (patient search: counting every Nguyễn would cost
    more than the page): X-Pagination then says only whether a next page exists."""
    page_params.has_more = has_more
    page_params.item_count = page_params.first_item  # any number: the header is built below


def open_ended_metadata(page_params) -> dict | None:
    """X-Pagination of an open-ended page; None for a counted one."""
    has_more = getattr(page_params, "has_more", None)
    if has_more is None:
        return None
    meta = {"page": page_params.page, "first_page": 1}
    if page_params.page > 1:
        meta["previous_page"] = page_params.page - 1
    if has_more:
        meta["next_page"] = page_params.page + 1
    return meta
