"""fa3d.runtime.ros: fa3d in robotics tooling (the ``fa3d[ros]`` extra).

* :mod:`.hri_msgs`: the ROS4HRI message definitions (REP-155) registered into a rosbags typestore.
* :mod:`.images`: ROS ``sensor_msgs/Image`` and ``CompressedImage`` <-> OpenCV BGR.
* :mod:`.frames`: REP-155 frames (``face_<id>``, ``gaze_<id>``) and 3D landmarks in metres.
* :mod:`.messages`: THE one function that turns a frame's results and its header into ROS messages,
  shared by the bag writer and the node.
* :mod:`.bag_source`: frames from a ROS 1 / ROS 2 bag (a :class:`~fa3d.runtime.sources.FrameSource`).
* :mod:`.bag_writer`: a rosbag2 (MCAP) of those messages, written under a temporary name.
* :mod:`.foxglove_view`: a live Foxglove view and an MCAP recording of it.
* :mod:`.fa_run`: what ``fa-run`` adds with ``--source BAG``, ``--out-bag``, ``--foxglove``, ``--record``.
* :mod:`.node`: the ROS 2 node (``fa-ros-node``), for machines with ROS 2.

The runtime core never imports this package (the import contract in pyproject.toml); ``fa-run``'s command
line is its one door, opened only when a bag or a ROS/Foxglove output is asked for. rosbags, foxglove-sdk
and rclpy are imported lazily (:mod:`fa3d.runtime.lazy`): importing these modules needs none of them.
See docs/ros2.md.
"""
