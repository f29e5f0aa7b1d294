# install.cmake: the packaged files beside dmjd's unit (included from CMakeLists.txt once
# DMJ_STATE_DIR and DMJ_SYSTEMD_UNIT_DIR are set): dmj-sync.service and its defaults, the
# CLI's defaults (/etc/default/dmj: DMJ_DB), dmjd's logrotate file and its sysctl setting.
set(DMJ_BIN_DIR ${CMAKE_INSTALL_FULL_BINDIR})
set(DMJ_SYSCONF_DIR ${CMAKE_INSTALL_FULL_SYSCONFDIR})
set(DMJ_LOG_DIR ${CMAKE_INSTALL_FULL_LOCALSTATEDIR}/log/dmj)
foreach(f dmj-sync.service dmj-sync.default dmj.default dmjd.logrotate)
    configure_file(${PROJECT_SOURCE_DIR}/packaging/${f}.in ${f} @ONLY)
endforeach()
install(FILES ${PROJECT_BINARY_DIR}/dmj-sync.service DESTINATION ${DMJ_SYSTEMD_UNIT_DIR})
install(FILES ${PROJECT_BINARY_DIR}/dmj-sync.default DESTINATION ${DMJ_SYSCONF_DIR}/default
    RENAME dmj-sync)
install(FILES ${PROJECT_BINARY_DIR}/dmj.default DESTINATION ${DMJ_SYSCONF_DIR}/default
    RENAME dmj)
install(FILES ${PROJECT_BINARY_DIR}/dmjd.logrotate DESTINATION ${DMJ_SYSCONF_DIR}/logrotate.d
    RENAME dmjd)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/dmjd.sysctl
    DESTINATION ${CMAKE_INSTALL_PREFIX}/lib/sysctl.d RENAME dmjd.conf)
