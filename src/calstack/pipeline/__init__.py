"""Jobs of many combines: selected frames grouped into masters (``calstack combine``), and a whole
night's bias, darks and flats (``calstack masters``), and science frames calibrated with the
masters chosen for each (``calstack calibrate``).
"""
