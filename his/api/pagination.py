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
