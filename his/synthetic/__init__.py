"""A synthetic province for benchmarks and demonstrations (``bench/province.py``,
``his demo --size N``): facilities and staff, patients with their identifiers and cards,
and a year of visits, examinations, diagnoses, prescriptions and bills, generated from a
seed and bulk-loaded.

- ``facilities``: the commune stations and regional centres around the demo province's
  hospital, their rooms, staff and catalogs (a few hundred rows, written through the ORM);
- ``people``: patient rows;
- ``care``: the visits and everything that hangs off them;
- ``load``: the bulk loader (PostgreSQL ``COPY``, SQLite ``executemany``).

Nothing here is a rule of the system: where the synthetic data needs one (a bill's split,
a record's content hash) it calls the module that owns it.
"""
