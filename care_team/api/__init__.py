"""The care teams' REST API at /api/scheduler/ (Django REST framework).

Views are thin: serializers check the shape of the input, the plain functions in
`operations.py` and the scheduling services do the work, and every queryset goes through
`patients.access.scoped`, so another organization's objects are simply not found.
"""
