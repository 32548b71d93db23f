# Writes one man page with help2man: cmake -DHELP2MAN=... -DPROGRAM=... -DNAME=... -DINCLUDE=...
# -DOUTPUT=... -DVERSION=... -P man-page.cmake
#
# help2man reads the program's --help; INCLUDE (man/<program>.h2m, when it exists) adds the
# sections --help lacks (files, signals, exit status, see also). A program with subcommands
# (stmgr) gets each subcommand's own --help as a SUBCOMMANDS section, so the page is complete.
cmake_policy(VERSION 3.25)
get_filename_component(program_name ${PROGRAM} NAME)
get_filename_component(output_dir ${OUTPUT} DIRECTORY)
file(MAKE_DIRECTORY ${output_dir})
set(include_all ${OUTPUT}.h2m)
set(text "")
if(EXISTS ${INCLUDE})
  file(READ ${INCLUDE} text)
endif()

execute_process(COMMAND ${PROGRAM} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} --help failed (${rc})")
endif()
string(FIND "${help}" "Subcommands:" at)
if(at EQUAL -1)
  string(FIND "${help}" "SUBCOMMANDS:" at)  # CLI11 2.2 and later
endif()
if(at GREATER -1)
  string(SUBSTRING "${help}" ${at} -1 tail)
  string(REPLACE "\n" ";" lines "${tail}")
  list(POP_FRONT lines)  # the heading
  set(section "[SUBCOMMANDS]\n")
  foreach(line IN LISTS lines)
    if(line STREQUAL "")
      break()  # the list ends at the first blank line
    endif()
    if(line MATCHES "^  ([a-z][a-z0-9-]*)( |$)")
      set(sub ${CMAKE_MATCH_1})
      execute_process(COMMAND ${PROGRAM} ${sub} --help OUTPUT_VARIABLE sub_help RESULT_VARIABLE sub_rc)
      if(NOT sub_rc EQUAL 0)
        message(FATAL_ERROR "${PROGRAM} ${sub} --help failed (${sub_rc})")
      endif()
      # roff: a leading dot or quote would be a request; backslashes are escapes.
      string(REPLACE "\\" "\\e" sub_help "${sub_help}")
      string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" sub_help "${sub_help}")
      string(APPEND section ".SS \"${program_name} ${sub}\"\n.nf\n${sub_help}.fi\n")
    endif()
  endforeach()
  string(APPEND text "\n${section}")
endif()
file(WRITE ${include_all} "${text}")

execute_process(
  COMMAND ${HELP2MAN} --no-info --no-discard-stderr --section=1 --name=${NAME}
          --version-string=${VERSION} --include=${include_all} --output=${OUTPUT} ${PROGRAM}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "help2man failed for ${PROGRAM} (${rc})")
endif()
