"""Fees, BHYT co-payment, invoices, claim files (XML) and VietQR payments.

Depends on ``his.models`` and ``his.services``; nothing in ``his`` imports from here.
Empty until the billing issue lands.
"""
