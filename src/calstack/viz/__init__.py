"""Seeing the result: pictures of frames and masters, anomalous frames, and the HTML report.
Measuring (anomalies, sampled statistics) is kept apart from rendering.
"""
