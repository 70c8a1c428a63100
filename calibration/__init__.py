"""fa3d.calibration"""
